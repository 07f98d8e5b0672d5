"""The sender process: POSTs request bodies it reads from stdin, answers on stdout.

Started by :class:`~.shippers.ProcessShipper` as ``python .../transport/sender.py
BASE_URL CONCURRENCY`` (a script: it imports only :mod:`.exporters`, not the package),
with the API key in the environment (never on the command line). It holds no policy:
each request is sent once and its outcome classified by :class:`~.exporters.HTTPExporter`;
retries, batching, spooling and exit budgets stay in the host process. It exits when its
input ends (the host closed the pipe or died); requests still running are abandoned,
which the host has already accounted for (spooled or counted).
"""

from __future__ import annotations

import os
import queue
import struct
import sys
import threading
from typing import Any

if __package__:
    from .exporters import HTTPExporter, export_to
else:  # run as a script: its folder is on sys.path
    from exporters import HTTPExporter, export_to  # type: ignore[import-not-found,no-redef]

# host -> sender: header (job id, timeout in ms, path length, body length), path, body
REQUEST = struct.Struct("!IIHI")
# sender -> host: header (job id, status or 0, flags, retry-after in ms, detail length)
ANSWER = struct.Struct("!IHBIH")
FLAG_OK, FLAG_RETRYABLE, FLAG_HAS_RETRY_AFTER = 1, 2, 4


def _read_exact(stream: Any, n: int) -> bytes:
    data = stream.read(n)
    if len(data) < n:
        raise EOFError
    return bytes(data)


def main(argv: list[str]) -> int:
    base_url, concurrency = argv[0], max(1, int(argv[1]))
    api_key = os.environ.pop("GF_SENDER_API_KEY", "") or None
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    jobs: queue.SimpleQueue[tuple[int, float, str, bytes]] = queue.SimpleQueue()
    out_lock = threading.Lock()

    def answer(job_id: int, exporter: HTTPExporter, path: str, body: bytes, timeout: float) -> None:
        result = export_to(exporter, path, body, timeout)
        flags = (FLAG_OK if result.ok else 0) | (FLAG_RETRYABLE if result.retryable else 0)
        retry_ms = 0
        if result.retry_after is not None:
            flags |= FLAG_HAS_RETRY_AFTER
            retry_ms = min(int(result.retry_after * 1000), 0xFFFFFFFF)
        detail = result.detail.encode("utf-8", "replace")[:2000]
        head = ANSWER.pack(job_id, result.status or 0, flags, retry_ms, len(detail))
        with out_lock:
            stdout.write(head + detail)
            stdout.flush()

    def work() -> None:
        exporter = HTTPExporter(base_url, api_key)  # one keep-alive connection per thread
        while True:
            job_id, timeout, path, body = jobs.get()
            answer(job_id, exporter, path, body, timeout)

    for n in range(concurrency):
        threading.Thread(target=work, name=f"sender-{n}", daemon=True).start()
    try:
        while True:
            job_id, timeout_ms, path_len, body_len = REQUEST.unpack(
                _read_exact(stdin, REQUEST.size)
            )
            path = _read_exact(stdin, path_len).decode()
            jobs.put((job_id, timeout_ms / 1000, path, _read_exact(stdin, body_len)))
    except (EOFError, OSError, ValueError):
        pass
    # input ended: the host has gone or closed us; running requests are abandoned
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

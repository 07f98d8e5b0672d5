"""Shared by the benchmark scripts: a loopback sink server and small helpers.

The sink runs in its own process so that its work never competes with the measured
process for the GIL. It answers every POST at once with a fixed success body, and a GET
with what it received so far: ``{"requests", "messages", "conversations"}``.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

SINK = textwrap.dedent(
    r"""
    import asyncio, json, sys
    BODY = b'{"success":true,"conversationId":"c","messages":[],"id":"x"}'
    OK = (b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n'
          % len(BODY)) + BODY
    MARK = b'"externalConversationId":"'
    seen = {"requests": 0, "messages": 0}
    convs = set()
    def count(body):
        seen["requests"] += 1
        seen["messages"] += body.count(b'"externalMessageId"')
        at = body.find(MARK)
        if at >= 0:
            at += len(MARK)
            convs.add(body[at:body.find(b'"', at)])
    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b'\r\n\r\n')
                length, chunked = 0, False
                for line in head.split(b'\r\n'):
                    low = line.lower()
                    if low.startswith(b'content-length:'):
                        length = int(line[15:])
                    elif low.startswith(b'transfer-encoding:') and b'chunked' in low:
                        chunked = True
                body = b''
                if chunked:
                    while True:
                        size = int((await reader.readuntil(b'\r\n')).strip() or b'0', 16)
                        body += (await reader.readexactly(size + 2))[:-2]
                        if size == 0:
                            break
                elif length:
                    body = await reader.readexactly(length)
                if head.startswith(b'GET'):  # what arrived so far
                    data = json.dumps({**seen, "conversations": len(convs)}).encode()
                    writer.write(b'HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n' % len(data)
                                 + data)
                else:
                    count(body)
                    writer.write(OK)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()
    async def main():
        server = await asyncio.start_server(handle, '127.0.0.1', int(sys.argv[1]), backlog=512)
        print('ready', flush=True)
        async with server:
            await server.serve_forever()
    asyncio.run(main())
    """
)

# The end of a worker script: it defines run(n) (n timed calls), flush(), and the argv
# values calls, batches, mode; this warms up, then prints the median per-call figures of
# `batches` batches as JSON ("count": exactly `calls` calls for callgrind; "profile":
# cProfile of our code).
TIMED_RUN = textwrap.dedent(
    r"""
if mode == "count":
    # under callgrind: warm up, then exactly `calls` calls and their upload
    run(20)
    flush()
    run(calls)
    flush()
    sys.exit(0)
run(200)
flush()
if mode == "profile":
    import cProfile, pstats
    pr = cProfile.Profile(); pr.enable(); run(calls); pr.disable(); flush()
    st = pstats.Stats(pr); st.sort_stats("tottime").print_stats(15)
    st.sort_stats("cumulative").print_stats("gf_integrations", 25)
    sys.exit(0)
wall, thread, proc = [], [], []
for _ in range(batches):
    gc.collect()
    w, t, p = time.perf_counter(), time.thread_time(), time.process_time()
    run(calls)
    t1, p1, w1 = time.thread_time(), time.process_time(), time.perf_counter()
    flush()
    p2 = time.process_time()
    wall.append((w1 - w) / calls * 1e6)
    thread.append((t1 - t) / calls * 1e6)
    proc.append((p2 - p) / calls * 1e6)
print(json.dumps({"wall": statistics.median(wall), "thread": statistics.median(thread),
                  "proc": statistics.median(proc)}))
    """
)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sink(source: str = SINK) -> tuple[subprocess.Popen[str], str]:
    """Start a server script (taking its port as argv[1], printing a line when ready)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", source, str(port)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    proc.stdout.readline()  # "ready"
    return proc, f"http://127.0.0.1:{port}"


def available(module: str) -> bool:
    """True when ``module`` imports in a fresh interpreter (peers are optional)."""
    probe = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True)
    return probe.returncode == 0


def run_worker(
    source: str,
    argv: list[str],
    label: str,
    profile: bool = False,
    *,
    src: str | None = None,
    timeout: float = 1800,
) -> dict[str, Any] | None:
    """Run a worker script in a fresh process with ``src`` (default: this tree's ``src/``)
    on the path; its last stdout line is a JSON dict of figures. With ``profile`` its
    output is printed instead."""
    env = {**os.environ, "PYTHONPATH": src or str(ROOT / "src")}
    args = [sys.executable, "-c", source, *argv]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)
    if profile:
        print(proc.stdout[-6000:])
        return None
    if proc.returncode != 0:
        print(f"  {label}: failed: {proc.stderr.strip()[-800:]}", file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def report_overhead(
    title: str,
    runs: str,
    samples: dict[str, dict[str, list[float]]],
    ours: str = "greenflash",
    own: tuple[str, ...] = ("hooks",),
) -> None:
    """Median per-call times of each variant next to ``bare``'s, measured in the same run
    (worker figures ``thread`` / ``proc`` / ``wall``), and ours over the lightest peer's
    (``own``: our other variants, never peers)."""
    print(f"\n{title}: median us per call ({runs})")
    med = {v: {k: statistics.median(x) for k, x in s.items()} for v, s in samples.items() if s}
    if "bare" not in med:
        print("  bare run failed")
        return
    head = f"{'variant':<12}"
    for k in ("caller", "process", "wall"):
        head += f"{k:>10}{'added':>9}"
    print(head)
    for v, m in med.items():
        line = f"{v:<12}"
        for key in ("thread", "proc", "wall"):
            line += f"{m[key]:>10.1f}{m[key] - med['bare'][key]:>+9.1f}"
        print(line)
    peers = [v for v in med if v not in ("bare", ours, *own)]
    if ours in med and peers:
        for key, label in (("thread", "caller"), ("proc", "process"), ("wall", "wall")):
            added = med[ours][key] - med["bare"][key]
            lightest = min(med[p][key] - med["bare"][key] for p in peers)
            ratio = f"{added / lightest:.2f}" if lightest > 0 else "n/a"
            print(f"  {label}: ours / lightest peer's added = {ratio}")

"""Core benchmark: caller-side cost of recording, and sustained upload throughput.

Usage: ``.venv/bin/python bench/bench_core.py [--messages N] [--profile]``

1. Caller cost: ``client.record(LLMCall(...))`` for a small chat turn, next to building the
   same wire dicts by hand on the caller's thread (what a naive synchronous logger would do
   before even serialising). Mapping, ids, safe JSON and HTTP belong on the worker.
2. Throughput: messages per second from the first ``record`` until a loopback server that
   answers at once has received every message. The server is a raw asyncio HTTP/1.1 server
   in a subprocess, so it is not the bottleneck and does not compete for our GIL.

Figures are measured in one run and printed as a table; nothing here asserts.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

from _common import start_sink

ROOT = Path(__file__).resolve().parents[1]
# --src DIR: measure another source tree (e.g. an older commit: git archive <rev> src | tar -x)
_SRC = sys.argv[sys.argv.index("--src") + 1] if "--src" in sys.argv else str(ROOT / "src")
sys.path.insert(0, _SRC)

import gf_integrations as gf  # noqa: E402
from gf_integrations.core.context import Conv  # noqa: E402
from gf_integrations.core.events import LLMCall  # noqa: E402

# A minimal HTTP/1.1 server: reads each request, counts the messages in the body and
# answers 200 at once. GET /count returns the total. Runs in its own process.
SERVER = textwrap.dedent(
    r"""
    import asyncio, sys
    total = 0
    OK = (b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 52\r\n\r\n'
          b'{"success":true,"conversationId":"c","messages":[] }')
    async def handle(reader, writer):
        global total
        try:
            while True:
                head = await reader.readuntil(b'\r\n\r\n')
                length = 0
                for line in head.split(b'\r\n'):
                    if line[:15].lower() == b'content-length:':
                        length = int(line[15:])
                body = await reader.readexactly(length) if length else b''
                if head.startswith(b'GET '):
                    data = str(total).encode()
                    writer.write(b'HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s'
                                 % (len(data), data))
                else:
                    total += body.count(b'"externalMessageId"')
                    writer.write(OK)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
    async def main():
        server = await asyncio.start_server(handle, '127.0.0.1', int(sys.argv[1]))
        print('ready', flush=True)
        async with server:
            await server.serve_forever()
    asyncio.run(main())
    """
)


def server_count(url: str) -> int:
    with urllib.request.urlopen(url + "/count", timeout=5) as resp:
        return int(resp.read())


def make_event(conv: Conv, i: int) -> LLMCall:
    return LLMCall(
        conv,
        f"run-{i}",
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": f"What is {i} + {i}?", "id": f"u{i}"},
        ],
        reply={"role": "assistant", "content": f"It is {2 * i}.", "id": f"a{i}"},
        model="gpt-4o-mini",
        usage={"input_tokens": 12, "output_tokens": 5},
    )


def by_hand(conv: Conv, i: int) -> list[dict[str, object]]:
    """What a naive logger builds on the caller's thread for the same turn."""
    return [
        {
            "externalConversationId": conv.external_conversation_id,
            "externalUserId": conv.external_user_id,
            "role": "user",
            "content": f"What is {i} + {i}?",
            "externalMessageId": f"u{i}",
        },
        {
            "externalConversationId": conv.external_conversation_id,
            "externalUserId": conv.external_user_id,
            "role": "assistant",
            "content": f"It is {2 * i}.",
            "model": "gpt-4o-mini",
            "properties": {"usage": {"input_tokens": 12, "output_tokens": 5}},
            "externalMessageId": f"a{i}",
        },
    ]


def per_call_us(fn: object, n: int) -> tuple[float, float]:
    """(wall, caller-thread CPU) microseconds per call. The CPU figure leaves out time spent
    waiting for the GIL while the worker thread runs, i.e. what the caller's code costs."""
    assert callable(fn)
    gc.collect()
    start, cpu = time.perf_counter(), time.thread_time()
    fn(n)
    return (time.perf_counter() - start) / n * 1e6, (time.thread_time() - cpu) / n * 1e6


Pair = tuple[float, float]


def bench_caller(url: str, n: int) -> tuple[Pair, Pair, Pair]:
    convs = [Conv(f"caller-{k}", "u1") for k in range(50)]
    client = gf.GreenflashClient(base_url=url, max_queue_size=n + 10, flush_interval=0.2)

    def record(count: int) -> None:
        for i in range(count):
            client.record(make_event(convs[i % 50], i))

    def hand(count: int) -> None:
        sink = []
        for i in range(count):
            sink.append(by_hand(convs[i % 50], i))

    def event_only(count: int) -> None:
        sink = []
        for i in range(count):
            sink.append(make_event(convs[i % 50], i))

    hand(1000)
    t_hand = per_call_us(hand, n)
    t_event = per_call_us(event_only, n)
    t_record = per_call_us(record, n)
    client.flush(30)
    client.shutdown()
    return t_record, t_event, t_hand


def thread_cpu(thread: object) -> float:
    """CPU seconds used by one thread (Linux /proc), or NaN elsewhere."""
    tid = getattr(thread, "native_id", None)
    try:
        with open(f"/proc/self/task/{tid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def bench_throughput(url: str, turns: int, convs: int) -> tuple[float, int, float, float]:
    before = server_count(url)
    conv_list = [Conv(f"tp-{k}", "u1") for k in range(convs)]
    events = [make_event(conv_list[i % convs], i) for i in range(turns)]
    expected = 2 * turns
    client = gf.GreenflashClient(base_url=url, max_queue_size=turns + 10, flush_interval=0.2)
    start = time.perf_counter()
    for ev in events:
        client.record(ev)
    worker = client.uploader._thread
    ok = client.flush(120)
    elapsed = time.perf_counter() - start
    worker_cpu = thread_cpu(worker)
    got = server_count(url) - before
    stats = client.stats()
    client.shutdown()
    if not ok or got != expected:
        print(f"  warning: flush={ok} delivered {got}/{expected}; stats={stats}")
    print(f"  (POSTs: {stats.get('batches_sent')}, retried: {stats.get('retried')})")
    return got / elapsed, got, elapsed, worker_cpu


def profile_worker(url: str, turns: int) -> None:
    """cProfile the worker thread while it drains ``turns`` events."""
    from gf_integrations.transport import uploader as up

    prof = cProfile.Profile()
    original = up.Uploader._run

    def run(self: up.Uploader) -> None:
        prof.enable()
        try:
            original(self)
        finally:
            prof.disable()

    up.Uploader._run = run  # type: ignore[method-assign]
    try:
        bench_throughput(url, turns, 100)
    finally:
        up.Uploader._run = original  # type: ignore[method-assign]
    pstats.Stats(prof).sort_stats("tottime").print_stats(30)
    pstats.Stats(prof).sort_stats("cumulative").print_stats(30)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=50_000, help="chat turns (2 messages each)")
    parser.add_argument("--caller-n", type=int, default=50_000)
    parser.add_argument("--profile", action="store_true", help="cProfile the worker thread")
    parser.add_argument("--src", default=None, help="source tree to measure (default: ./src)")
    args = parser.parse_args()
    proc, url = start_sink(SERVER)
    try:
        if args.profile:
            profile_worker(url + "/api/v1", args.turns)
            return 0
        t_record, t_event, t_hand = bench_caller(url + "/api/v1", args.caller_n)
        rate, got, elapsed, worker_cpu = bench_throughput(url + "/api/v1", args.turns, 100)
        load = os.getloadavg()[0]
    finally:
        proc.terminate()
        proc.wait(5)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpu(s), src={_SRC}")
    print(f"{'caller side, one chat turn (2 messages)':<52}{'wall us':>10}{'cpu us':>10}")
    print("-" * 72)
    print(f"{'build the wire dicts by hand':<52}{t_hand[0]:>10.2f}{t_hand[1]:>10.2f}")
    print(f"{'build the LLMCall event only':<52}{t_event[0]:>10.2f}{t_event[1]:>10.2f}")
    print(
        f"{'client.record(LLMCall(...)) incl. building it':<52}"
        f"{t_record[0]:>10.2f}{t_record[1]:>10.2f}"
    )
    print(
        f"{'ratio record / by hand':<52}{t_record[0] / t_hand[0]:>10.2f}"
        f"{t_record[1] / t_hand[1]:>10.2f}"
    )
    print()
    print(f"{'upload':<52}{'value':>20}")
    print("-" * 72)
    print(f"{'upload throughput (messages/s)':<52}{rate:>20,.0f}")
    print(f"{'  messages delivered / seconds':<52}{f'{got} / {elapsed:.2f}':>20}")
    print(f"{'worker thread CPU seconds':<52}{worker_cpu:>20.2f}")
    print(f"{'messages per worker CPU-second':<52}{got / worker_cpu:>20,.0f}")
    print(f"{'load average (1 min) during the run':<52}{load:>20.2f}")
    print(f"{'  target':<52}{'>= 20,000':>20}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Ingest throughput into the local collector from the uploader, by batch size.

Run: .venv/bin/python bench/bench_collector.py [--messages N]

Each row records N user messages through ``GreenflashClient.record`` (core recorder +
background uploader + HTTP) into an embedded collector (SQLite file, WAL) with
``max_batch_messages`` = 1, 10 and 100, and times record -> flush -> stored. All rows
are measured in one run on the same machine, so read the ratios, not the absolutes.
"""

from __future__ import annotations

import argparse
import time

import gf_integrations as gf
from gf_integrations.collector import start_collector
from gf_integrations.collector.store import Store
from gf_integrations.core.events import UserInput
from gf_integrations.schema import MessageCreateRequest


def run_uploader(batch: int, n: int) -> tuple[float, int]:
    with start_collector() as col:
        client = gf.GreenflashClient(
            base_url=col.base_url,
            max_batch_messages=batch,
            flush_interval=5.0,  # only the count cap closes a batch
            max_queue_size=max(10_000, n * 2),
        )
        conv = client.resolve(fallback_conversation_id=f"bench-{batch}")
        start = time.perf_counter()
        for i in range(n):
            client.record(UserInput(conv, f"k{i}", f"message {i} " + "x" * 80))
        ok = client.flush(120)
        elapsed = time.perf_counter() - start
        stats = client.stats()
        client.shutdown(2)
        stored = col.counts()["messages"]
        if not ok or stored != n:
            raise SystemExit(f"incomplete delivery: {ok=} {stored=} {stats}")
        return elapsed, stats["batches_sent"]


def run_store(batch: int, n: int) -> float:
    """The SQLite layer alone (no HTTP, no uploader), for reference."""
    store = Store(":memory:")
    reqs = [
        MessageCreateRequest.model_validate(
            {
                "externalUserId": "u",
                "externalConversationId": "c",
                "messages": [
                    {
                        "role": "user",
                        "content": f"m{j} " + "x" * 80,
                        "externalMessageId": f"{i}-{j}",
                    }
                    for j in range(batch)
                ],
            }
        )
        for i in range(n // batch)
    ]
    start = time.perf_counter()
    for r in reqs:
        store.ingest(r)
    elapsed = time.perf_counter() - start
    store.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000, help="messages per batch size")
    args = parser.parse_args()
    n = args.messages
    print(f"{n} messages per row; uploader -> HTTP -> collector (SQLite WAL file)\n")
    print(
        f"{'batch':>5} | {'requests':>8} | {'seconds':>7} | {'msg/s':>8} | {'x batch=1':>9} | "
        f"{'store-only msg/s':>16}"
    )
    print("-" * 70)
    base = None
    for batch in (1, 10, 100):
        elapsed, requests = run_uploader(batch, n)
        rate = n / elapsed
        base = base or rate
        store_rate = n / run_store(batch, n)
        print(
            f"{batch:>5} | {requests:>8} | {elapsed:>7.2f} | {rate:>8.0f} | {rate / base:>8.1f}x | "
            f"{store_rate:>16.0f}"
        )


if __name__ == "__main__":
    main()

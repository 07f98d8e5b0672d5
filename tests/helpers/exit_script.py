"""Subprocess for the exit tests: record N messages, then exit WITHOUT calling flush.

Usage: python exit_script.py BASE_URL N SHUTDOWN_TIMEOUT [SPOOL_DIR|-] [CLIENTS]

With CLIENTS > 1, that many extra clients (all pointed at BASE_URL) hold messages too:
exit must still be ONE bounded pass, not one budget per client.

Prints "recorded <monotonic>" just before returning from the script, so the parent can
measure how long the interpreter takes to exit (the atexit flush) from that point.
"""

from __future__ import annotations

import sys
import time

import gf_integrations as gf
from gf_integrations.core.context import Conv
from gf_integrations.core.events import UserInput


def main() -> None:
    base_url, n, shutdown_timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    spool = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] != "-" else None
    clients = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    client = gf.configure(
        base_url=base_url,
        shutdown_timeout=shutdown_timeout,
        flush_interval=5.0,  # nothing is sent by the interval: only the exit flush sends
        request_timeout=30.0,
        spool_dir=spool,
    )
    conv = Conv("exit-conv", "exit-user")
    for i in range(n):
        client.record(UserInput(conv, f"k{i}", f"message {i}"))
    for extra in range(1, clients):
        other = gf.GreenflashClient(
            base_url=base_url, shutdown_timeout=shutdown_timeout, flush_interval=5.0
        )
        other.record(UserInput(Conv(f"extra-{extra}", "exit-user"), "k", f"extra {extra}"))
    print(f"recorded {time.time()}", flush=True)


if __name__ == "__main__":
    main()

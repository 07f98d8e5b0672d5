"""How much a background thread gets done while the host thread releases the GIL briefly.

Usage::

    .venv/bin/python bench/bench_gil_starvation.py [--seconds 2]

Why this exists (issue 11, docs/DESIGN.md section 3): a host thread that releases the GIL
for a moment on every call (``os.urandom`` in the OpenAI client's idempotency key, an event
loop polling) takes it back before a thread waiting on another core wakes up, and that
thread's 5 ms switch timer restarts because the GIL did change hands. The uploader's
worker then starves, which is why a submitting thread maps queued events itself past a
backlog (``stats()["prepared_by_callers"]``).

A background thread does fixed ~100 us work items; the host thread spins in Python and
calls ``os.urandom(16)`` every N iterations. Printed: the host's gap between releases and
the background items/s. It only shows on an otherwise idle machine with two free cores
(with other load, the waiting thread is already running when the GIL is released).
Nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap

PROBE = textwrap.dedent(
    r"""
    import os, sys, threading, time
    spin, seconds = int(sys.argv[1]), float(sys.argv[2])
    done = {}
    def background():
        start, n = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            x = 0
            for i in range(3000):
                x += i
            n += 1
        done["items"] = n / seconds
    t = threading.Thread(target=background)
    t.start()
    gaps = []
    while t.is_alive():
        g = time.perf_counter()
        x = 0
        for i in range(spin):
            x += i
        gaps.append(time.perf_counter() - g)
        os.urandom(16)  # releases the GIL around getrandom()
    gaps.sort()
    print(gaps[len(gaps) // 2] * 1e3, done["items"])
    """
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    print(f"load average: {os.getloadavg()[0]:.2f}, {os.cpu_count()} cpu(s)")
    print(f"{'host releases every':>20}{'background items/s':>20}")
    for spin in (1_000, 10_000, 50_000, 400_000):
        out = subprocess.run(
            [sys.executable, "-c", PROBE, str(spin), str(args.seconds)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        print(f"{float(out[0]):>17.2f} ms{float(out[1]):>20.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

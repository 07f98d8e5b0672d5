"""What any background Python thread costs the host thread, whatever it does.

Usage::

    .venv/bin/python bench/bench_background_cost.py [--calls 200] [--rounds 60]
                                                    [--duty 0 2 4 8] [--period 20]

Why this exists (issue 11): the LangChain handler's caller-side cost with the uploader
running is compared with a no-op handler's. Part of what the caller pays is not our hooks
but the worker's mere existence: while another thread runs Python, the host's thread
loses its warm caches and pays GIL hand-offs. This measures that part without any of our
code: the host runs the bare ``prompt | FakeListChatModel`` chain (no callbacks), and a
background thread wakes every ``--period`` ms to run ``--duty`` ms of pure-Python work
that touches none of the host's objects. Batches with the background work on and off
alternate in one process (``--rounds`` pairs of ``--calls`` invocations); printed is the
host thread's added CPU per invocation (median of the pairs' differences) for each duty.
Compare with ``bench_langchain.py``'s ``noop`` row (LangChain's own dispatch to a handler)
and with our worker's CPU per invocation (its ``process`` minus ``caller`` column).
Nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

PROBE = textwrap.dedent(
    r"""
    import gc, json, statistics, sys, threading, time, warnings
    warnings.simplefilter("ignore")
    duty, period, calls, rounds = (float(sys.argv[1]) / 1e3, float(sys.argv[2]) / 1e3,
                                   int(sys.argv[3]), int(sys.argv[4]))
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from langchain_core.prompts import ChatPromptTemplate
    chain = ChatPromptTemplate.from_messages(
        [("system", "You are a {persona}."), ("human", "{q}")]
    ) | FakeListChatModel(responses=["The capital of France is Paris."])
    working = [False]

    def background():
        table = {}
        while True:
            time.sleep(period)
            if not working[0]:
                continue
            end = time.thread_time() + duty
            while time.thread_time() < end:
                for i in range(100):
                    table[i] = str(i)

    threading.Thread(target=background, daemon=True).start()
    for k in range(300):
        chain.invoke({"persona": "geographer", "q": f"Question {k}?"})
    off, on = [], []
    for r in range(rounds):
        for state, into in ((False, off), (True, on)):
            working[0] = state
            gc.collect()
            t = time.thread_time()
            for k in range(calls):
                chain.invoke({"persona": "geographer", "q": f"Question {k}?"})
            into.append((time.thread_time() - t) / calls * 1e6)
    print(json.dumps({"bare": statistics.median(off),
                      "added": statistics.median(b - a for a, b in zip(off, on))}))
    """
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--duty", type=float, nargs="+", default=[0, 2, 4, 8], help="ms per period")
    ap.add_argument("--period", type=float, default=20, help="ms between background bursts")
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print(f"{'background':>22}{'host bare us':>14}{'host added us':>15}")
    for duty in args.duty:
        argv = [str(duty), str(args.period), str(args.calls), str(args.rounds)]
        proc = subprocess.run(
            [sys.executable, "-c", PROBE, *argv],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if proc.returncode != 0:
            print(f"  duty {duty}: failed: {proc.stderr.strip().splitlines()[-1:]}")
            continue
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        share = duty / args.period * 100
        label = f"{duty:g} ms / {args.period:g} ms ({share:.0f}%)"
        print(f"{label:>22}{res['bare']:>14.0f}{res['added']:>+15.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""LangChain handler benchmark: per-invocation cost of ``prompt | chat model``, and RSS.

Usage::

    .venv/bin/python bench/bench_langchain.py [--calls 2000] [--batches 5] [--repeats 3]
                                              [--rss-calls 100000] [--skip-peers] [--profile]

Variants, each measured in its own fresh process (peers install process-global state),
interleaved over ``--repeats`` rounds; each process times ``--batches`` batches of
``--calls`` invocations after a warm-up and reports its median batch:

* ``bare``: no callbacks at all.
* ``noop``: a ``BaseCallbackHandler`` subclass whose hooks do nothing (it implements
  ``on_chat_model_start``, else LangChain falls back to ``on_llm_start`` and builds
  prompt strings): the floor, i.e. LangChain's own dispatch.
* ``greenflash``: our handler, uploading to a loopback sink.
* ``langfuse`` / ``langsmith``: the peers' LangChain handlers, pointed at the same loopback
  sink (installed only for benchmarks: ``pip install langfuse langsmith``); skipped when
  not installed.

"added" is a variant's median minus ``bare``'s. The sink is a raw asyncio HTTP server in a
subprocess that answers 200 to everything, so it neither limits nor shares our GIL.
``BENCH_SRC=/path/to/src`` measures another source tree. Then one process runs
``--rss-calls`` invocations with our handler and reports RSS growth
(after a warm-up of 2,000 calls, a flush and a gc on both sides). Nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

from _common import available, start_sink

ROOT = Path(__file__).resolve().parents[1]

# The measured process: builds the chain and the variant's handler, times batches.
WORKER = textwrap.dedent(
    r"""
    import gc, json, os, statistics, sys, time, warnings
    warnings.simplefilter("ignore")
    variant, sink, calls, batches, rss_calls, profile = (
        sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]),
        sys.argv[6] == "1")
    os.environ["LANGSMITH_TRACING"] = "false"
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from langchain_core.prompts import ChatPromptTemplate

    class Noop(BaseCallbackHandler):
        def on_chat_model_start(self, *a, **k): return None

    chain = ChatPromptTemplate.from_messages(
        [("system", "You are a {persona}."), ("human", "{q}")]
    ) | FakeListChatModel(responses=["The capital of France is Paris."])
    flush = lambda: None
    if variant == "bare":
        callbacks = []
    elif variant == "noop":
        callbacks = [Noop()]
    elif variant == "greenflash":
        import gf_integrations as gf
        from gf_integrations.langchain import GreenflashCallbackHandler
        client = gf.configure(base_url=sink + "/api/v1", external_user_id="bench")
        callbacks = [GreenflashCallbackHandler()]
        flush = lambda: client.flush(30)
    elif variant == "langfuse":
        from langfuse import Langfuse
        from langfuse.langchain import CallbackHandler
        lf = Langfuse(public_key="pk-lf-bench", secret_key="sk-lf-bench", host=sink)
        callbacks = [CallbackHandler()]
        flush = lf.flush
    elif variant == "langsmith":
        from langsmith import Client
        from langchain_core.tracers.langchain import LangChainTracer
        ls = Client(api_url=sink, api_key="ls-bench")
        callbacks = [LangChainTracer(client=ls, project_name="bench")]
        flush = ls.flush
    config = {"callbacks": callbacks}
    inputs = {"persona": "geographer", "q": "Capital of France?"}

    def run(n):
        for _ in range(n):
            chain.invoke(inputs, config=config)

    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    run(300)
    flush()
    if rss_calls:
        run(2000); flush(); gc.collect()
        before = rss_mb()
        start = time.perf_counter()
        run(rss_calls)
        elapsed = time.perf_counter() - start
        flush(); gc.collect()
        after = rss_mb()
        from gf_integrations.langchain import run_state_size
        print(json.dumps({"before": before, "after": after, "us": elapsed / rss_calls * 1e6,
                          "runs_tracked": run_state_size(), "stats": client.stats()}))
        sys.exit(0)
    if profile:
        import cProfile, pstats
        pr = cProfile.Profile(); pr.enable(); run(calls); pr.disable()
        st = pstats.Stats(pr)
        st.sort_stats("tottime").print_stats(12)
        st.sort_stats("cumulative").print_stats("gf_integrations", 30)
        sys.exit(0)
    wall, thread, proc = [], [], []
    for _ in range(batches):
        gc.collect()
        w, t, p = time.perf_counter(), time.thread_time(), time.process_time()
        run(calls)
        t1, p1, w1 = time.thread_time(), time.process_time(), time.perf_counter()
        flush()  # background work of this batch is charged to it (process CPU)
        p2 = time.process_time()
        wall.append((w1 - w) / calls * 1e6)
        thread.append((t1 - t) / calls * 1e6)
        proc.append((p2 - p) / calls * 1e6)
    print(json.dumps({"wall": statistics.median(wall), "thread": statistics.median(thread),
                      "proc": statistics.median(proc)}))
    """
)


def worker(
    variant: str, sink: str, calls: int, batches: int, rss: int = 0, profile: bool = False
) -> dict | None:
    env = {**os.environ, "PYTHONPATH": os.environ.get("BENCH_SRC") or str(ROOT / "src")}
    args = [
        sys.executable,
        "-c",
        WORKER,
        variant,
        sink,
        str(calls),
        str(batches),
        str(rss),
        "1" if profile else "0",
    ]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=1800)
    if profile:
        print(proc.stdout)
        return None
    if proc.returncode != 0:
        print(f"  {variant}: failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--batches", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rss-calls", type=int, default=100_000)
    ap.add_argument("--skip-peers", action="store_true")
    ap.add_argument("--profile", action="store_true", help="cProfile our handler's run and exit")
    args = ap.parse_args()

    sink_proc, sink = start_sink()
    try:
        if args.profile:
            worker("greenflash", sink, args.calls, 1, profile=True)
            return 0
        variants = ["bare", "noop", "greenflash"]
        if not args.skip_peers:
            for name, module in (("langfuse", "langfuse"), ("langsmith", "langsmith")):
                if available(module):
                    variants.append(name)
                else:
                    print(f"({name} not installed: skipped)")
        samples: dict[str, dict[str, list[float]]] = {v: {} for v in variants}
        for _ in range(args.repeats):
            for v in variants:
                res = worker(v, sink, args.calls, args.batches)
                for k, val in (res or {}).items():
                    samples[v].setdefault(k, []).append(val)
        print(
            f"\nprompt | FakeListChatModel: median us per invocation "
            f"({args.repeats} processes x {args.batches} batches x {args.calls} calls).\n"
            "caller = CPU of the calling thread; process = CPU of all threads incl. the "
            "background upload of the batch; wall is noisy on a shared machine."
        )
        head = f"{'variant':<12}"
        for k in ("caller", "process", "wall"):
            head += f"{k:>10}{'added':>9}{'/floor':>8}"
        print(head)
        med = {v: {k: statistics.median(x) for k, x in s.items()} for v, s in samples.items() if s}
        for v, m in med.items():
            line = f"{v:<12}"
            for key in ("thread", "proc", "wall"):
                bare = med["bare"][key]
                floor = med["noop"][key] - bare
                added = m[key] - bare
                ratio = f"{added / floor:.2f}x" if v != "bare" and floor > 0 else "-"
                line += f"{m[key]:>10.1f}{added:>+9.1f}{ratio:>8}"
            print(line)
        if args.rss_calls:
            res = worker("greenflash", sink, 0, 0, rss=args.rss_calls)
            if res is not None:
                print(
                    f"\nRSS with our handler after {args.rss_calls:,} invocations: "
                    f"{res['before']:.1f} MB -> {res['after']:.1f} MB "
                    f"(growth {res['after'] - res['before']:+.1f} MB; {res['us']:.0f} us/call; "
                    f"runs still tracked: {res['runs_tracked']}; "
                    f"sent {res['stats'].get('sent')}, "
                    f"dropped {res['stats'].get('dropped_queue_full')})"
                )
    finally:
        sink_proc.terminate()
        sink_proc.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

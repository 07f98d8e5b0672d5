"""LangChain handler benchmark: per-invocation cost of ``prompt | chat model``, and RSS.

Usage::

    .venv/bin/python bench/bench_langchain.py [--calls 400] [--rounds 12] [--repeats 3]
                                              [--rss-calls 100000] [--skip-peers] [--profile]

Variants:

* ``bare``: no callbacks at all.
* ``noop``: a ``BaseCallbackHandler`` subclass whose hooks do nothing (it implements
  ``on_chat_model_start``, else LangChain falls back to ``on_llm_start`` and builds
  prompt strings): the floor, i.e. LangChain's own dispatch to one handler.
* ``gf hooks``: our handler with ``record`` discarding its events: the hooks alone
  (no queue, no worker, nothing kept past the call).
* ``greenflash``: our handler, uploading to a loopback sink with the uploader running.
* ``langfuse`` / ``langsmith``: the peers' LangChain handlers, pointed at the same loopback
  sink (installed only for benchmarks: ``pip install langfuse langsmith``); skipped when
  not installed.

Paired measurement: one process runs ``bare`` and its variants in alternating batches of
``--calls`` invocations (``--rounds`` rounds, the order rotating each round), so that each
variant's "added" is the median of its per-round differences to ``bare`` *in the same
process*: process-to-process noise (CPU placement, memory layout, a neighbour's load)
cancels, which it did not when every variant ran in its own process (the no-op floor
then moved between +35 and +171 us). Peers run in their own processes (they install
process-global state), each paired with its own ``bare``. After each batch the process
flushes (outside the caller's time): "process" CPU then includes the background upload of
that batch. Figures are the median over ``--repeats`` processes.
``BENCH_SRC=/path/to/src`` measures another source tree. Then one process runs
``--rss-calls`` invocations with our handler and reports RSS growth (after a warm-up of
2,000 calls, a flush and a gc on both sides). Nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import textwrap
from typing import Any

from _common import available, run_worker, start_sink

# The measured process: builds the chain and the variants' handlers, times paired batches.
WORKER = textwrap.dedent(
    r"""
    import gc, json, os, statistics, sys, time, warnings
    warnings.simplefilter("ignore")
    variants, sink, calls, rounds, rss_calls, profile = (
        sys.argv[1].split(","), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]),
        int(sys.argv[5]), sys.argv[6] == "1")
    os.environ["LANGSMITH_TRACING"] = "false"
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from langchain_core.prompts import ChatPromptTemplate

    class Noop(BaseCallbackHandler):
        def on_chat_model_start(self, *a, **k): return None

    chain = ChatPromptTemplate.from_messages(
        [("system", "You are a {persona}."), ("human", "{q}")]
    ) | FakeListChatModel(responses=["The capital of France is Paris."])

    def make(variant):
        # (callbacks, flush) of one variant
        if variant == "bare":
            return [], None
        if variant == "noop":
            return [Noop()], None
        if variant in ("greenflash", "gf hooks"):
            import gf_integrations as gf
            from gf_integrations.langchain import GreenflashCallbackHandler
            if variant == "greenflash":
                client = gf.configure(base_url=sink + "/api/v1", external_user_id="bench")
                return [GreenflashCallbackHandler()], lambda: client.flush(30)
            hooks = gf.GreenflashClient(base_url=sink + "/api/v1", external_user_id="bench")
            hooks.record = lambda event: None  # the hooks only: events go nowhere
            return [GreenflashCallbackHandler(client=hooks)], None
        if variant == "langfuse":
            from langfuse import Langfuse
            from langfuse.langchain import CallbackHandler
            lf = Langfuse(public_key="pk-lf-bench", secret_key="sk-lf-bench", host=sink)
            return [CallbackHandler()], lf.flush
        if variant == "langsmith":
            from langsmith import Client
            from langchain_core.tracers.langchain import LangChainTracer
            ls = Client(api_url=sink, api_key="ls-bench")
            return [LangChainTracer(client=ls, project_name="bench")], ls.flush
        raise SystemExit(f"unknown variant {variant}")

    made = {v: make(v) for v in variants}
    configs = {v: {"callbacks": cb} for v, (cb, _f) in made.items()}
    flushes = {v: f for v, (_cb, f) in made.items()}

    def run(config, n, start=0):
        for k in range(start, start + n):
            chain.invoke({"persona": "geographer", "q": f"Question {k}?"}, config=config)

    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    for v in variants:
        run(configs[v], 300)
        if flushes[v]:
            flushes[v]()
    if rss_calls:
        config, flush = configs["greenflash"], flushes["greenflash"]
        run(config, 2000); flush(); gc.collect()
        before = rss_mb()
        start = time.perf_counter()
        run(config, rss_calls)
        elapsed = time.perf_counter() - start
        flush(); gc.collect()
        after = rss_mb()
        import gf_integrations as gf
        from gf_integrations.langchain import run_state_size
        print(json.dumps({"before": before, "after": after, "us": elapsed / rss_calls * 1e6,
                          "runs_tracked": run_state_size(), "stats": gf.get_client().stats()}))
        sys.exit(0)
    if profile:
        import cProfile, pstats
        pr = cProfile.Profile(); pr.enable(); run(configs["greenflash"], calls); pr.disable()
        st = pstats.Stats(pr)
        st.sort_stats("tottime").print_stats(12)
        st.sort_stats("cumulative").print_stats("gf_integrations", 30)
        sys.exit(0)
    samples = {v: {"wall": [], "thread": [], "proc": []} for v in variants}
    order = list(variants)
    for r in range(rounds):
        order = order[1:] + order[:1]
        for v in order:
            gc.collect()
            w, t, p = time.perf_counter(), time.thread_time(), time.process_time()
            run(configs[v], calls, 300 + r * calls)
            t1, w1 = time.thread_time(), time.perf_counter()
            if flushes[v]:
                flushes[v]()  # background work of this batch is charged to it (process)
            p2 = time.process_time()
            samples[v]["wall"].append((w1 - w) / calls * 1e6)
            samples[v]["thread"].append((t1 - t) / calls * 1e6)
            samples[v]["proc"].append((p2 - p) / calls * 1e6)
    out = {}
    for v in variants:
        out[v] = {}
        for key, xs in samples[v].items():
            base = samples["bare"][key]
            out[v][key] = statistics.median(xs)
            out[v][key + "_added"] = statistics.median(a - b for a, b in zip(xs, base))
    print(json.dumps(out))
    """
)


def worker(
    variants: list[str],
    sink: str,
    calls: int,
    rounds: int,
    rss: int = 0,
    profile: bool = False,
) -> dict[str, Any] | None:
    argv = [",".join(variants), sink, str(calls), str(rounds), str(rss), "1" if profile else "0"]
    label = ",".join(variants)
    return run_worker(WORKER, argv, label, profile, src=os.environ.get("BENCH_SRC"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=400, help="invocations per batch")
    ap.add_argument("--rounds", type=int, default=12, help="paired rounds per process")
    ap.add_argument("--repeats", type=int, default=3, help="processes per variant group")
    ap.add_argument("--rss-calls", type=int, default=100_000)
    ap.add_argument("--skip-peers", action="store_true")
    ap.add_argument("--profile", action="store_true", help="cProfile our handler's run and exit")
    args = ap.parse_args()

    sink_proc, sink = start_sink()
    try:
        if args.profile:
            worker(["greenflash"], sink, args.calls, 1, profile=True)
            return 0
        groups = [["bare", "noop", "gf hooks", "greenflash"]]
        if not args.skip_peers:
            for name, module in (("langfuse", "langfuse"), ("langsmith", "langsmith")):
                if available(module):
                    groups.append(["bare", name])
                else:
                    print(f"({name} not installed: skipped)")
        samples: dict[str, dict[str, list[float]]] = {}
        for _ in range(args.repeats):
            for group in groups:
                res = worker(group, sink, args.calls, args.rounds)
                for v, figures in (res or {}).items():
                    if v == "bare" and v in samples and group is not groups[0]:
                        continue  # the table's bare row: the first group's
                    for k, val in figures.items():
                        samples.setdefault(v, {}).setdefault(k, []).append(val)
        print(
            f"\nprompt | FakeListChatModel: us per invocation, median of {args.repeats} "
            f"processes x {args.rounds} paired rounds x {args.calls} calls.\n"
            "caller = CPU of the calling thread; process = CPU of all threads incl. the "
            "background upload of the batch; wall is noisy on a shared machine.\n"
            "added = median per-round difference to bare in the same process; "
            "/floor = added / noop's added."
        )
        head = f"{'variant':<12}"
        for k in ("caller", "process", "wall"):
            head += f"{k:>10}{'added':>9}{'/floor':>8}"
        print(head)
        med = {v: {k: statistics.median(x) for k, x in s.items()} for v, s in samples.items()}
        for v, m in med.items():
            line = f"{v:<12}"
            for key in ("thread", "proc", "wall"):
                floor = med["noop"][key + "_added"]
                added = m[key + "_added"]
                ratio = f"{added / floor:.2f}x" if v != "bare" and floor > 0 else "-"
                line += f"{m[key]:>10.1f}{added:>+9.1f}{ratio:>8}"
            print(line)
        if args.rss_calls:
            res = worker(["greenflash"], sink, 0, 0, rss=args.rss_calls)
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

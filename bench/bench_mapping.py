"""Our CPU per host call, split: the caller's side and the worker's mapping + encoding.

Usage::

    .venv/bin/python bench/bench_mapping.py [--calls 5000] [--repeats 3]
                                            [--loops openai langchain] [--base /other/src]

For each loop (the OpenAI client over ``httpx.MockTransport``; LangChain's
``prompt | FakeListChatModel`` with our handler, as in ``bench_delivery.py``) a fresh
process measures, in µs per call:

* caller +us: CPU of the calling thread with our instrumentation minus without it, with
  ``record`` replaced by a list append (no uploader, no background thread): what the
  host's own thread pays (noisy on a loaded machine: the host's own call is large);
* hooks us: CPU of the calling thread inside our code (the LangChain handler's hooks, or
  ``wrap_openai``'s before/after steps), timed from inside (plus ~1 us of timer per hook):
  the same cost without the host's noise;
* map us / encode us: the worker's cost of the recorded events, measured apart:
  ``Mapper.map`` then ``MessageWire.parts`` over every event, with a fresh mapper
  (every call is its own conversation, as in an evaluation loop).

``--base`` (or ``BENCH_SRC``) names another source tree measured in the same run, e.g.
``git archive main src | tar -x -C /tmp/base`` then ``--base /tmp/base/src``. Each
figure is the median over ``--repeats`` processes. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import textwrap
from pathlib import Path

from _common import run_worker
from bench_delivery import WORKER as DELIVERY_WORKER

ROOT = Path(__file__).resolve().parents[1]

# The loops are bench_delivery's: the same host code, measured another way.
LOOPS = DELIVERY_WORKER[
    DELIVERY_WORKER.index("def openai_loop") : DELIVERY_WORKER.index("def record_loop")
]

WORKER = textwrap.dedent(
    r"""
    import gc, json, os, statistics, sys, time, warnings
    warnings.simplefilter("ignore")
    loop, calls = sys.argv[1], int(sys.argv[2])
    os.environ["LANGSMITH_TRACING"] = "false"
    RUN = os.getpid()

    {loops}
    import gf_integrations as gf
    from gf_integrations.core.recorder import Mapper
    from gf_integrations.core.wire import MessageWire

    class Nowhere:  # an exporter is never reached: record() is replaced below
        def export(self, *a, **k): raise AssertionError("not used")

    client = gf.configure(exporter=Nowhere(), external_user_id="bench")
    events = []
    client.record = events.append  # the caller's side only: no uploader

    make = openai_loop if loop == "openai" else langchain_loop

    # our code on the caller's thread, timed from inside: the hooks LangChain calls, or
    # wrap_openai's before/after steps (patched before the client is wrapped)
    in_hooks = [0]

    def timed(fn):
        def hook(*args, **kwargs):
            t = time.thread_time_ns()
            try:
                return fn(*args, **kwargs)
            finally:
                in_hooks[0] += time.thread_time_ns() - t
        return hook

    if loop == "openai":
        import gf_integrations.openai as wrapper
        wrapper._begin, wrapper._finish = timed(wrapper._begin), timed(wrapper._finish)
    else:
        from gf_integrations.langchain import GreenflashCallbackHandler as H
        for name in dir(H):
            if name.startswith("on_") and callable(getattr(H, name)):
                setattr(H, name, timed(getattr(H, name)))

    # bare and instrumented batches alternate, so that both see the same machine load
    bare_run, our_run = make(False), make(True)
    bare_run(0, 300)
    our_run(0, 300)
    batch = max(calls // 10, 1)
    bare_us, our_us = [], []
    del events[:]
    in_hooks[0] = 0
    gc.collect()
    for start in range(300, 300 + calls, batch):
        for run, into in ((bare_run, bare_us), (our_run, our_us)):
            t = time.thread_time()
            run(start, batch)
            into.append((time.thread_time() - t) / batch * 1e6)
    calls = len(our_us) * batch
    bare, ours = statistics.median(bare_us), statistics.median(our_us)
    recorded = list(events)  # the timed runs' events

    def worker_us(sample):
        mapper = Mapper(limits=client.settings.limits, mask=client.settings.mask)
        wire = MessageWire(mask=client.settings.mask, max_message_bytes=1 << 20,
                           report=lambda name, n: None)
        gc.collect()
        t = time.thread_time()
        mapped = [mapper.map(ev) for ev in sample]
        t1 = time.thread_time()
        for out in mapped:
            wire.parts(out)
        t2 = time.thread_time()
        return (t1 - t) / calls * 1e6, (t2 - t1) / calls * 1e6

    map_us, encode_us = worker_us(recorded)
    print(json.dumps({"caller": ours - bare, "bare": bare, "hooks": in_hooks[0] / calls / 1e3,
                      "map": map_us,
                      "encode": encode_us, "events": len(recorded) / calls}))
    """
).replace("{loops}\n", LOOPS)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--loops", nargs="+", default=["openai", "langchain"])
    ap.add_argument("--base", default=os.environ.get("BENCH_SRC"), help="another src tree")
    args = ap.parse_args()
    trees = [("this", str(ROOT / "src"))]
    if args.base:
        trees.insert(0, ("base", args.base))
    print(f"load average before: {os.getloadavg()[0]:.2f}; median of {args.repeats} processes")
    print(
        f"{'loop':<10}{'tree':<6}{'bare us':>9}{'caller +us':>11}{'hooks us':>9}"
        f"{'map us':>8}{'encode us':>10}"
    )
    for loop in args.loops:
        samples: dict[str, list[dict[str, float]]] = {name: [] for name, _ in trees}
        for _ in range(args.repeats):
            for name, src in trees:  # interleaved: both trees see the same load
                res = run_worker(WORKER, [loop, str(args.calls)], f"{loop} ({src})", src=src)
                if res is not None:
                    samples[name].append(res)
        for name, _ in trees:
            runs = samples[name]
            if not runs:
                continue
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(
                f"{loop:<10}{name:<6}{med['bare']:>9.0f}{med['caller']:>11.0f}"
                f"{med['hooks']:>9.0f}{med['map']:>8.0f}{med['encode']:>10.0f}"
            )
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

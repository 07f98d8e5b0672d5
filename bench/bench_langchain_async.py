"""How our handler joins langchain-core's async callback dispatch: cost of each design.

Usage::

    .venv/bin/python bench/bench_langchain_async.py [--calls 1000] [--rounds 5]

langchain-core's ``AsyncCallbackManager.on_llm_start`` gives a completion LLM's start event
to the ``run_inline`` handlers *or else* to the others (langchain-ai/langchain#39633), so an
inline handler of ours starved every other handler of it (issue 12). Designs measured,
each next to a user's non-inline ``AsyncCallbackHandler`` (the handler that must keep
seeing every event), under ``ainvoke`` of a completion LLM and of a chat model:

* ``neighbour``: the user's handler alone (the floor).
* ``static inline``: ``run_inline = True`` as a plain attribute (before the fix: fast but
  starves the neighbour on the completion path).
* ``dynamic``: the shipped handler, whose ``run_inline`` property answers False only to
  ``on_llm_start``'s either/or comprehensions (one frame lookup per read elsewhere).
* ``executor``: ``run_inline = False``: LangChain runs each sync hook on its default thread
  pool, in a copy of the context (a thread hand-off per event).
* ``async twin``: an ``AsyncCallbackHandler`` whose ``async def`` hooks call the sync ones,
  not inline: awaited in ``asyncio.gather`` tasks, no thread. (It cannot serve sync calls:
  langchain-core would run its coroutines on a fresh event loop per event.)

Variants run interleaved in one process, ``--rounds`` times, ``--calls`` calls each, with
the uploader sending to a loopback sink; figures are medians of per-call process CPU
(every thread: executor and upload included) and wall time. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
import warnings
from typing import Any

from _common import start_sink

warnings.simplefilter("ignore")


def build_variants() -> dict[str, Any]:
    from langchain_core.callbacks import AsyncCallbackHandler

    from gf_integrations.langchain import GreenflashCallbackHandler

    class StaticInline(GreenflashCallbackHandler):
        run_inline = True  # type: ignore[assignment]

    class Executor(GreenflashCallbackHandler):
        run_inline = False  # type: ignore[assignment]

    def twin_of(sync: GreenflashCallbackHandler) -> AsyncCallbackHandler:
        names = [
            n for n in dir(sync) if n.startswith("on_") and callable(getattr(type(sync), n, None))
        ]

        def make(name: str) -> Any:
            hook = getattr(sync, name)

            async def twin(self: Any, *args: Any, **kwargs: Any) -> None:
                hook(*args, **kwargs)

            return twin

        cls = type("AsyncTwin", (AsyncCallbackHandler,), {n: make(n) for n in names})
        return cls()  # type: ignore[no-any-return]

    return {
        "neighbour": None,
        "static inline": StaticInline(),
        "dynamic": GreenflashCallbackHandler(),
        "executor": Executor(),
        "async twin": twin_of(GreenflashCallbackHandler()),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    from langchain_core.callbacks import AsyncCallbackHandler
    from langchain_core.language_models.fake import FakeListLLM
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    import gf_integrations as gf

    class Neighbour(AsyncCallbackHandler):
        """A user's handler: counts the LLM starts it sees."""

        def __init__(self) -> None:
            self.starts = 0

        async def on_llm_start(self, *args: Any, **kwargs: Any) -> None:
            self.starts += 1

        async def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
            self.starts += 1

        async def on_llm_end(self, *args: Any, **kwargs: Any) -> None:
            return None

    sink_proc, sink = start_sink()
    try:
        client = gf.configure(base_url=sink + "/api/v1", external_user_id="bench")
        variants = build_variants()
        models = {
            "completion": FakeListLLM(responses=["The capital of France is Paris."]),
            "chat": FakeListChatModel(responses=["The capital of France is Paris."]),
        }
        cpu: dict[tuple[str, str], list[float]] = {}
        wall: dict[tuple[str, str], list[float]] = {}
        starts: dict[tuple[str, str], float] = {}

        async def calls(model: Any, config: dict[str, Any], n: int) -> None:
            for _ in range(n):
                await model.ainvoke("Capital of France?", config=config)

        for _round in range(args.rounds):
            for mname, model in models.items():
                for vname, ours in variants.items():
                    neighbour = Neighbour()
                    handlers = [neighbour] if ours is None else [neighbour, ours]
                    config: dict[str, Any] = {"callbacks": handlers}
                    asyncio.run(calls(model, config, 50))  # warm-up
                    client.flush(30)
                    gc.collect()
                    neighbour.starts = 0
                    p0, w0 = time.process_time(), time.perf_counter()
                    asyncio.run(calls(model, config, args.calls))
                    w1 = time.perf_counter()
                    client.flush(30)  # the upload of this batch is charged to it
                    p1 = time.process_time()
                    key = (mname, vname)
                    cpu.setdefault(key, []).append((p1 - p0) / args.calls * 1e6)
                    wall.setdefault(key, []).append((w1 - w0) / args.calls * 1e6)
                    starts[key] = neighbour.starts / args.calls
        print(
            f"\nainvoke next to a user's AsyncCallbackHandler: median us per call "
            f"({args.rounds} rounds x {args.calls} calls); 'added' is over 'neighbour'; "
            "'starts seen' is the share of LLM start events the user's handler got."
        )
        print(
            f"{'model':<11}{'design':<15}{'cpu':>8}{'added':>8}{'wall':>8}{'added':>8}  starts seen"
        )
        for mname in models:
            base_cpu = statistics.median(cpu[(mname, "neighbour")])
            base_wall = statistics.median(wall[(mname, "neighbour")])
            for vname in variants:
                c = statistics.median(cpu[(mname, vname)])
                w = statistics.median(wall[(mname, vname)])
                print(
                    f"{mname:<11}{vname:<15}{c:>8.0f}{c - base_cpu:>8.0f}{w:>8.0f}"
                    f"{w - base_wall:>8.0f}  {starts[(mname, vname)]:.0%}"
                )
        client.shutdown(5)
    finally:
        sink_proc.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""OpenAI wrapper benchmark: per-call overhead on the real client over httpx.MockTransport.

Usage::

    .venv/bin/python bench/bench_openai.py [--calls 1000] [--batches 5] [--repeats 3]
                                           [--skip-peers] [--profile chat|stream]

Workloads: ``chat`` (a non-streaming ``chat.completions.create``) and ``stream``
(``stream=True``, 6 chunks, consumed to the end). Each call sends a different question, so
every call yields new messages to upload (nothing is deduplicated away).

Variants, each in its own fresh process (peers patch process-global state), interleaved
over ``--repeats`` rounds; a process warms up, then times ``--batches`` batches of
``--calls`` calls and reports its median batch:

* ``bare``: the unwrapped client.
* ``hooks``: ``wrap_openai`` with nothing queued (the client's ``submit`` is a no-op):
  what the wrapper itself costs the caller's thread.
* ``greenflash``: ``gf_integrations.openai.wrap_openai``, uploading to a loopback sink.
* ``langsmith``: ``langsmith.wrappers.wrap_openai`` with a ``Client`` pointed at the sink.
* ``langfuse``: ``langfuse.openai`` (patches the OpenAI classes on import) with a
  ``Langfuse`` client pointed at the sink.

Peers are installed for benchmarks only (``pip install langsmith langfuse``) and skipped
when missing. The sink is a raw asyncio HTTP server in a subprocess answering 200 to
everything, so it neither limits nor shares our GIL. "added" is a variant's median minus
``bare``'s median in the same run. Columns: ``caller`` = CPU time of the calling thread,
``process`` = CPU of all threads including the flush of that batch's uploads (background
work charged to it), ``wall`` = elapsed time of the loop. Nothing here asserts.

On a shared, loaded machine those times swing by more than the overheads being measured;
``--instructions`` adds per-call instruction counts under valgrind/callgrind (caller
thread, and all threads), which do not depend on load but take minutes per run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

from _common import ROOT, TIMED_RUN, available, report_overhead, run_worker, start_sink

WORKER = (
    textwrap.dedent(
        r"""
    import gc, json, os, statistics, sys, time, warnings
    warnings.simplefilter("ignore")
    variant, workload, sink, calls, batches, mode = (
        sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
    os.environ["LANGSMITH_TRACING"] = "false"
    import httpx

    COMPLETION = json.dumps({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1764115200,
        "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_1",
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                     "message": {"role": "assistant", "content": "Paris is the capital.",
                                 "refusal": None, "annotations": []}}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 6, "total_tokens": 26},
    }).encode()
    base = {"id": "chatcmpl-2", "object": "chat.completion.chunk", "created": 1764115200,
            "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_1"}
    deltas = [{"role": "assistant", "content": ""}, {"content": "Paris"}, {"content": " is"},
              {"content": " the"}, {"content": " capital."}, {}]
    STREAM = "".join(
        "data: " + json.dumps({**base, "choices": [{"index": 0, "delta": d, "logprobs": None,
            "finish_reason": "stop" if i == len(deltas) - 1 else None}]}) + "\n\n"
        for i, d in enumerate(deltas)).encode() + b"data: [DONE]\n\n"
    JSON_HEADERS = {"content-type": "application/json"}
    SSE_HEADERS = {"content-type": "text/event-stream"}

    def handler(request):
        if b'"stream":true' in request.content or b'"stream": true' in request.content:
            return httpx.Response(200, headers=SSE_HEADERS, content=STREAM)
        return httpx.Response(200, headers=JSON_HEADERS, content=COMPLETION)

    flush = lambda: None
    if variant == "langfuse":
        from langfuse import Langfuse
        lf = Langfuse(public_key="pk-lf-bench", secret_key="sk-lf-bench", host=sink)
        from langfuse.openai import OpenAI
        flush = lf.flush
    else:
        from openai import OpenAI
    client = OpenAI(api_key="test", base_url="http://mock/v1", max_retries=0,
                    http_client=httpx.Client(transport=httpx.MockTransport(handler)))
    if variant in ("greenflash", "hooks"):
        import gf_integrations as gf
        from gf_integrations.openai import wrap_openai
        gfc = gf.configure(base_url=sink + "/api/v1", external_user_id="bench")
        if variant == "hooks":  # the wrapper's own work on the caller's thread, nothing queued
            gfc.uploader.submit = lambda item: True
        client = wrap_openai(client)
        flush = lambda: gfc.flush(60)
    elif variant == "langsmith":
        from langsmith import Client
        from langsmith.wrappers import wrap_openai
        os.environ["LANGSMITH_TRACING"] = "true"
        ls = Client(api_url=sink, api_key="ls-bench")
        client = wrap_openai(client, tracing_extra={"client": ls})
        flush = ls.flush

    SYSTEM = {"role": "system", "content": "You are a concise geography assistant."}
    REPLY = "Paris is the capital."
    create = client.chat.completions.create
    counter = [0]

    def messages(k):
        # a stateless chat app: sessions of 5 turns, each call resends the growing history
        session, turn = divmod(k, 5)
        msgs = [SYSTEM]
        for t in range(turn):
            msgs.append({"role": "user", "content": f"Session {session}, question {t}?"})
            msgs.append({"role": "assistant", "content": REPLY})
        msgs.append({"role": "user", "content": f"Session {session}, question {turn}?"})
        return msgs

    def run(n):
        i = counter[0]
        counter[0] += n
        if workload == "chat":
            for k in range(i, i + n):
                create(model="gpt-4o-mini", messages=messages(k))
        else:
            for k in range(i, i + n):
                for _ in create(model="gpt-4o-mini", stream=True, messages=messages(k)):
                    pass

    """
    )
    + TIMED_RUN
)


def worker(
    variant: str, workload: str, sink: str, calls: int, batches: int, mode: str = "time"
) -> dict[str, float] | None:
    argv = [variant, workload, sink, str(calls), str(batches), mode]
    return run_worker(WORKER, argv, f"{variant}/{workload}", profile=mode == "profile")


def instructions(variant: str, workload: str, sink: str, calls: int) -> dict[str, float] | None:
    """Instructions executed under callgrind: the caller thread, and all threads."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        args = ["valgrind", "--tool=callgrind", "--separate-threads=yes"]
        args += [f"--callgrind-out-file={out}", sys.executable, "-c", WORKER]
        args += [variant, workload, sink, str(calls), "0", "count"]
        proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=3600)
        if proc.returncode != 0:
            print(f"  {variant}/{workload}: callgrind run failed", file=sys.stderr)
            return None
        totals: dict[str, int] = {}
        for name in os.listdir(tmp):
            with open(os.path.join(tmp, name)) as f:
                for line in f:
                    if line.startswith("totals:"):
                        totals[name] = int(line.split()[1])
        caller = sum(v for k, v in totals.items() if k.endswith("-01"))
        return {"caller": caller, "all": sum(totals.values())}


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--batches", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-peers", action="store_true")
    ap.add_argument("--profile", choices=["chat", "stream"], help="cProfile our wrapper, exit")
    ap.add_argument(
        "--instructions",
        action="store_true",
        help="also count instructions per call under valgrind (deterministic, slow)",
    )
    ap.add_argument("--instr-calls", type=int, default=100)
    args = ap.parse_args()

    sink_proc, sink = start_sink()
    try:
        if args.profile:
            worker("greenflash", args.profile, sink, args.calls, 1, mode="profile")
            return 0
        variants = ["bare", "hooks", "greenflash"]
        if not args.skip_peers:
            for name in ("langfuse", "langsmith"):
                if available(name):
                    variants.append(name)
                else:
                    print(f"({name} not installed: skipped)")
        for workload in ("chat", "stream"):
            samples: dict[str, dict[str, list[float]]] = {v: {} for v in variants}
            for _ in range(args.repeats):
                for v in variants:
                    res = worker(v, workload, sink, args.calls, args.batches)
                    for k, val in (res or {}).items():
                        samples[v].setdefault(k, []).append(val)
            report(workload, args, samples)
        if args.instructions:
            if shutil.which("valgrind") is None:
                print("(valgrind not installed: instruction counts skipped)")
            else:
                count_instructions(variants, sink, args.instr_calls)
    finally:
        sink_proc.terminate()
        sink_proc.wait()
    return 0


def count_instructions(variants: list[str], sink: str, calls: int) -> None:
    """Per-call instructions: (run with 2N calls - run with N calls) / N, per variant.

    Instruction counts do not depend on how busy the machine is, which wall and CPU
    times on a shared 2-core box very much do.
    """
    for workload in ("chat", "stream"):
        per_call: dict[str, dict[str, float]] = {}
        for v in variants:
            small = instructions(v, workload, sink, calls)
            large = instructions(v, workload, sink, 2 * calls)
            if small and large:
                per_call[v] = {k: (large[k] - small[k]) / calls for k in small}
        if "bare" not in per_call:
            continue
        bare = per_call["bare"]
        print(f"\n{workload}: thousand instructions per call under callgrind ({calls} calls)")
        print(f"{'variant':<12}{'caller':>10}{'added':>9}{'all thr.':>10}{'added':>9}")
        for v, m in per_call.items():
            print(
                f"{v:<12}{m['caller'] / 1e3:>10.0f}{(m['caller'] - bare['caller']) / 1e3:>+9.0f}"
                f"{m['all'] / 1e3:>10.0f}{(m['all'] - bare['all']) / 1e3:>+9.0f}"
            )
        peers = [v for v in per_call if v not in ("bare", "hooks", "greenflash")]
        if "greenflash" in per_call and peers:
            for key in ("caller", "all"):
                ours = per_call["greenflash"][key] - bare[key]
                lightest = min(per_call[p][key] - bare[key] for p in peers)
                ratio = f"{ours / lightest:.2f}" if lightest > 0 else "n/a"
                print(f"  {key}: ours / lightest peer's added = {ratio}")


def report(
    workload: str, args: argparse.Namespace, samples: dict[str, dict[str, list[float]]]
) -> None:
    title = "chat.completions.create" if workload == "chat" else "create(stream=True), 6 chunks"
    runs = f"{args.repeats} processes x {args.batches} batches x {args.calls} calls"
    report_overhead(title, runs, samples)


if __name__ == "__main__":
    raise SystemExit(main())

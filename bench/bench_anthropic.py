"""Anthropic wrapper benchmark: per-call overhead of ``wrap_anthropic`` next to a bare call.

Usage::

    .venv/bin/python bench/bench_anthropic.py [--calls 1000] [--batches 5] [--repeats 3]
                                              [--skip-peers] [--profile create|stream]

Workloads: ``create`` (a non-streaming ``messages.create``) and ``stream``
(``stream=True``, 11 SSE events, consumed to the end). The real ``anthropic`` client talks
to an ``httpx2.MockTransport`` answering with fixed bytes in the real wire format (built
once from ``tests/helpers/fake_anthropic.py``). Each call is a turn of a stateless chat
app (sessions of 5 turns resending their growing history), so every call yields new
messages to upload.

Variants, each in its own fresh process, interleaved over ``--repeats`` rounds; a process
warms up, then times ``--batches`` batches of ``--calls`` calls and reports its median:

* ``bare``: the unwrapped client.
* ``greenflash``: ``gf_integrations.anthropic.wrap_anthropic``, uploading to a loopback sink.
* ``langsmith``: ``langsmith.wrappers.wrap_anthropic`` with a ``Client`` pointed at the
  sink (skipped when not installed).

"added" is a variant's median minus ``bare``'s median in the same run. Columns: ``caller``
= CPU time of the calling thread, ``process`` = CPU of all threads including the flush of
that batch's uploads, ``wall`` = elapsed time of the loop. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import textwrap

from _common import ROOT, TIMED_RUN, available, report_overhead, run_worker, start_sink

WORKER = (
    textwrap.dedent(
        r"""
    import gc, json, os, statistics, sys, time, warnings
    warnings.simplefilter("ignore")
    variant, workload, sink, calls, batches, mode, root = (
        sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6],
        sys.argv[7])
    os.environ["LANGSMITH_TRACING"] = "false"
    sys.path.insert(0, root)
    import httpx2
    from anthropic import Anthropic
    from tests.helpers.fake_anthropic import FakeAnthropic, text

    fake = FakeAnthropic()
    REPLY = "Paris is the capital of France."
    answers = {}
    for stream in (False, True):
        fake.queue(text(REPLY), id="msg_bench")
        body = json.dumps({"model": "claude-sonnet-4-6", "stream": stream}).encode()
        status, headers, pieces, _ = fake.answer("POST", "/v1/messages", {}, body)
        answers[stream] = (headers, b"".join(pieces))

    def handler(request):
        headers, content = answers[b'"stream":true' in request.content]
        return httpx2.Response(200, headers=headers, content=content)

    client = Anthropic(api_key="sk-ant-bench", max_retries=0,
                       http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))
    flush = lambda: None
    if variant == "greenflash":
        import gf_integrations as gf
        from gf_integrations.anthropic import wrap_anthropic
        gfc = gf.configure(base_url=sink + "/api/v1", external_user_id="bench")
        client = wrap_anthropic(client)
        flush = lambda: gfc.flush(60)
    elif variant == "langsmith":
        from langsmith import Client
        from langsmith.wrappers import wrap_anthropic
        os.environ["LANGSMITH_TRACING"] = "true"
        ls = Client(api_url=sink, api_key="ls-bench")
        client = wrap_anthropic(client, tracing_extra={"client": ls})
        flush = ls.flush

    SYSTEM = "You are a concise geography assistant."
    create = client.messages.create
    counter = [0]

    def messages(k):
        session, turn = divmod(k, 5)
        msgs = []
        for t in range(turn):
            msgs.append({"role": "user", "content": f"Session {session}, question {t}?"})
            msgs.append({"role": "assistant", "content": REPLY})
        msgs.append({"role": "user", "content": f"Session {session}, question {turn}?"})
        return msgs

    def run(n):
        i = counter[0]
        counter[0] += n
        kw = {"model": "claude-sonnet-4-6", "max_tokens": 256, "system": SYSTEM}
        if workload == "create":
            for k in range(i, i + n):
                create(messages=messages(k), **kw)
        else:
            for k in range(i, i + n):
                for _ in create(messages=messages(k), stream=True, **kw):
                    pass

    """
    )
    + TIMED_RUN
)

TITLES = {"create": "messages.create", "stream": "messages.create(stream=True), 11 events"}


def worker(
    variant: str, workload: str, sink: str, calls: int, batches: int, mode: str = "time"
) -> dict[str, float] | None:
    argv = [variant, workload, sink, str(calls), str(batches), mode, str(ROOT)]
    return run_worker(WORKER, argv, f"{variant}/{workload}", profile=mode == "profile")


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--batches", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-peers", action="store_true")
    ap.add_argument("--profile", choices=list(TITLES), help="cProfile our wrapper, exit")
    args = ap.parse_args()
    if not available("anthropic"):
        print("(anthropic not installed: skipped)")
        return 0
    sink_proc, sink = start_sink()
    try:
        if args.profile:
            worker("greenflash", args.profile, sink, args.calls, 1, mode="profile")
            return 0
        variants = ["bare", "greenflash"]
        if not args.skip_peers:
            if available("langsmith"):
                variants.append("langsmith")
            else:
                print("(langsmith not installed: skipped)")
        runs = f"{args.repeats} processes x {args.batches} batches x {args.calls} calls"
        for workload, title in TITLES.items():
            samples: dict[str, dict[str, list[float]]] = {v: {} for v in variants}
            for _ in range(args.repeats):
                for v in variants:
                    res = worker(v, workload, sink, args.calls, args.batches)
                    for k, val in (res or {}).items():
                        samples[v].setdefault(k, []).append(val)
            report_overhead(title, runs, samples)
    finally:
        sink_proc.terminate()
        sink_proc.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

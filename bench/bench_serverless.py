"""Serverless benchmark: what Greenflash adds to an AWS Lambda invocation and to a cold start.

Usage::

    .venv/bin/python bench/bench_serverless.py [--runtimes 5] [--invocations 40]

The real runtime interface client (``python -m awslambdaric function.handler``, as a
container image runs it) serves a function that makes one OpenAI chat call per
invocation (the SDK over ``httpx.MockTransport``: no model server in the loop), each
invocation in its own conversation. It runs against the loopback Runtime API of
``tests/helpers/fake_lambda_runtime.py``, which freezes the runtime's process group after
every response as Lambda does. Three variants of the same function, each in fresh runtime
processes, interleaved over ``--runtimes`` rounds:

* ``bare``: no Greenflash at all (not imported);
* ``disabled``: the pack imported and configured, the client wrapped, ``GREENFLASH_ENABLED=false``;
* ``greenflash``: enabled, delivering every invocation before its response (the automatic
  Lambda mode) to a loopback ingest sink in its own process (``_common.SINK``).

Figures, medians over the runtimes of each runtime's median:

* ``warm``: an invocation, from the event handed to the runtime to its response received
  (the handler, our delivery, the post), over ``--invocations`` warm invocations;
* ``init``: process start to the runtime's first request for an event (imports, the
  function module's configuration): Lambda's init duration;
* ``first``: the first invocation (what a cold start adds after init: lazy imports of the
  first call).

"added" is a variant's figure minus ``disabled``'s (the issue's comparison) and minus
``bare``'s (what the pack costs at all), in the same run. Targets (issue 26): warm added
at most 25 ms, cold start (init + first) added at most 100 ms. The load average is printed:
on a shared machine the times swing. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import textwrap
import urllib.request
from pathlib import Path

from _common import ROOT, start_sink

sys.path.insert(0, str(ROOT / "tests"))  # the Runtime API emulator the tests use

from helpers.fake_lambda_runtime import FakeLambdaRuntime

FUNCTION = textwrap.dedent(
    r"""
    import json, os
    import httpx
    from openai import OpenAI

    COMPLETION = json.dumps({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1764115200,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                     "message": {"role": "assistant", "content": "Paris is the capital."}}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }).encode()

    def answer(request):
        return httpx.Response(200, content=COMPLETION,
                              headers={"content-type": "application/json"})

    openai = OpenAI(api_key="sk-bench", base_url="http://model.invalid/v1",
                    http_client=httpx.Client(transport=httpx.MockTransport(answer)))
    if os.environ["BENCH_VARIANT"] == "bare":
        import contextlib
        scope = lambda conversation: contextlib.nullcontext()
    else:
        import gf_integrations as gf
        from gf_integrations.openai import wrap_openai
        gf.configure()
        openai = wrap_openai(openai)
        scope = lambda conversation: gf.conversation(conversation, external_user_id="u1")

    def handler(event, context):
        with scope(event["conversation"]):
            reply = openai.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": event["question"]}],
            )
        return {"answer": reply.choices[0].message.content}
    """
)

VARIANTS = ("bare", "disabled", "greenflash")


def run_runtime(
    variant: str, folder: Path, sink: str, invocations: int, round_no: int
) -> dict[str, float]:
    """One fresh runtime: its init, first invocation and median warm invocation (ms)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GREENFLASH_", "OPENAI_", "AWS_", "PYTHONPATH"))
    }
    env.update(
        PYTHONPATH=str(ROOT / "src"),
        BENCH_VARIANT=variant,
        AWS_LAMBDA_FUNCTION_NAME="gf-bench",
        GREENFLASH_BASE_URL=sink + "/api/v1",
        GREENFLASH_ENABLED="false" if variant == "disabled" else "true",
        TMPDIR=str(folder),
    )
    runtime = FakeLambdaRuntime()
    try:
        runtime.start("function.handler", env=env, cwd=folder, log=folder / f"{variant}.log")
        init = runtime.wait_next_call() - runtime.started_at
        times = []
        for i in range(invocations + 1):
            event = {"conversation": f"{variant}-{round_no}-{i}", "question": f"Question {i}?"}
            outcome = runtime.invoke(event)
            if outcome.kind != "response":
                raise RuntimeError(f"{variant}: {outcome.body}\n{runtime.log()}")
            times.append(outcome.received - outcome.served)
    finally:
        runtime.close()
    return {
        "init": init * 1000,
        "first": times[0] * 1000,
        "warm": statistics.median(times[1:]) * 1000,
    }


def sink_counts(sink: str) -> dict[str, int]:
    with urllib.request.urlopen(sink, timeout=10) as response:  # the sink's GET: its counts
        counts: dict[str, int] = json.loads(response.read())
        return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runtimes", type=int, default=5, help="fresh runtimes per variant")
    parser.add_argument("--invocations", type=int, default=40, help="warm ones per runtime")
    args = parser.parse_args()

    load_before = os.getloadavg()
    sink_proc, sink = start_sink()
    samples: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    try:
        with tempfile.TemporaryDirectory(prefix="gf-bench-lambda-") as tmp:
            folder = Path(tmp)
            (folder / "function.py").write_text(FUNCTION)
            for round_no in range(args.runtimes):
                for variant in VARIANTS:
                    samples[variant].append(
                        run_runtime(variant, folder, sink, args.invocations, round_no)
                    )
        counts = sink_counts(sink)
    finally:
        sink_proc.kill()
        sink_proc.wait()
    load_after = os.getloadavg()

    expected = args.runtimes * (args.invocations + 1)
    print(
        f"\nAWS Lambda (awslambdaric, frozen after each response): {args.runtimes} runtimes "
        f"x {args.invocations} warm invocations per variant; load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after ({os.cpu_count()} CPUs)"
    )
    med = {
        v: {k: statistics.median(s[k] for s in samples[v]) for k in samples[v][0]} for v in VARIANTS
    }
    for v in VARIANTS:
        med[v]["cold"] = med[v]["init"] + med[v]["first"]
    print(f"{'variant':<12}{'warm ms':>10}{'init ms':>10}{'first ms':>10}{'cold ms':>10}")
    for v in VARIANTS:
        m = med[v]
        print(f"{v:<12}{m['warm']:>10.2f}{m['init']:>10.1f}{m['first']:>10.1f}{m['cold']:>10.1f}")
    gf, off, bare = med["greenflash"], med["disabled"], med["bare"]
    for label, base in (("disabled", off), ("bare", bare)):
        print(
            f"  added over {label:<8}: warm {gf['warm'] - base['warm']:+.2f} ms, init "
            f"{gf['init'] - base['init']:+.1f} ms, first {gf['first'] - base['first']:+.1f} ms, "
            f"cold start {gf['cold'] - base['cold']:+.1f} ms"
        )
    warm_ok = gf["warm"] - off["warm"] <= 25
    cold_ok = gf["cold"] - off["cold"] <= 100
    print(
        f"  targets: warm added <= 25 ms {'met' if warm_ok else 'NOT met'}; cold start added "
        f"<= 100 ms {'met' if cold_ok else 'NOT met'} (over disabled)"
    )
    print(
        f"  delivered before each freeze: {counts['conversations']} of {expected} "
        f"conversations reached the sink"
    )


if __name__ == "__main__":
    main()

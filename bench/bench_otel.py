"""OpenTelemetry bridge benchmark: what ``GreenflashSpanProcessor`` adds per GenAI span.

Usage::

    .venv/bin/python bench/bench_otel.py [--spans 2000] [--batches 5] [--repeats 3]

Workload: ``chat`` spans as Pydantic AI and the contrib instrumentations emit them
(``gen_ai.input.messages`` with a system prompt and a 6-message history, about 1.5 KB of
JSON, ``gen_ai.output.messages``, model, usage), each in its own trace, so every span is a
new conversation whose messages are all uploaded (nothing is deduplicated away).

Variants, each in its own fresh process, interleaved over ``--repeats`` rounds:

* ``batch``: an SDK ``TracerProvider`` with a ``BatchSpanProcessor`` and an exporter that
  drops everything: the usual production setup without us (the floor).
* ``greenflash``: the same plus ``GreenflashSpanProcessor``, uploading to a loopback sink
  (a raw asyncio HTTP server in a subprocess).

A process warms up, then times ``--batches`` batches of ``--spans`` spans and reports its
median batch: ``caller`` = CPU time of the thread that ends the spans, ``process`` = CPU of
all threads including the upload of that batch (flushed inside the timing), ``wall``.
"added" is greenflash minus batch in the same run; "x" is the ratio. Nothing asserts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap

from _common import start_sink

WORKER = textwrap.dedent(
    r"""
    import json, resource, statistics, sys, time
    variant, sink, spans, batches = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS

    tp = TracerProvider()
    tp.add_span_processor(BatchSpanProcessor(Drop()))
    gfc = None
    if variant == "greenflash":
        import gf_integrations as gf
        from gf_integrations.otel import GreenflashSpanProcessor
        gfc = gf.GreenflashClient(base_url=sink + "/api/v1", max_queue_size=100_000)
        tp.add_span_processor(GreenflashSpanProcessor(client=gfc))
    tracer = tp.get_tracer("bench")

    def text(role, content):
        return {"role": role, "parts": [{"type": "text", "content": content}]}

    HISTORY = [text("user" if i % 2 == 0 else "assistant",
                    f"message {i} of the history, about a paragraph of ordinary chat text. " * 3)
               for i in range(6)]

    def one(n):
        inputs = json.dumps(HISTORY + [text("user", f"question number {n}?")])
        with tracer.start_as_current_span("chat gpt-4o-mini") as span:
            span.set_attributes({
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.provider.name": "openai",
                "gen_ai.system_instructions": '[{"type":"text","content":"Be brief."}]',
                "gen_ai.input.messages": inputs,
            })
            span.set_attributes({
                "gen_ai.output.messages": json.dumps([text("assistant", f"answer {n}.")]),
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                "gen_ai.usage.input_tokens": 120,
                "gen_ai.usage.output_tokens": 8,
            })

    def batch(offset):
        c0, p0, w0 = time.thread_time(), time.process_time(), time.perf_counter()
        for n in range(spans):
            one(offset + n)
        caller = time.thread_time() - c0
        tp.force_flush()
        if gfc is not None:
            gfc.flush(60)
        return caller, time.process_time() - p0, time.perf_counter() - w0

    batch(10**9)  # warm-up
    rows = [batch(i * spans) for i in range(batches)]
    med = [statistics.median(r[k] for r in rows) * 1e6 / spans for k in range(3)]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stats = gfc.stats() if gfc is not None else {}
    print(json.dumps({"caller": med[0], "process": med[1], "wall": med[2], "rss_mb": rss,
                      "sent": stats.get("sent", 0), "dropped": sum(
                          v for k, v in stats.items() if k.startswith("dropped"))}))
    """
)

VARIANTS = ("batch", "greenflash")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spans", type=int, default=2000)
    ap.add_argument("--batches", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    sink, url = start_sink()
    results: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    try:
        for _ in range(args.repeats):
            for variant in VARIANTS:
                argv = [variant, url, str(args.spans), str(args.batches)]
                out = subprocess.run(
                    [sys.executable, "-c", WORKER, *argv],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                results[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
    finally:
        sink.terminate()
        sink.wait()
    med = {
        v: {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        for v, rows in results.items()
    }
    print(f"{args.spans} chat spans x {args.batches} batches, median of {args.repeats} processes")
    print(f"{'variant':<12}{'caller us':>11}{'process us':>12}{'wall us':>10}{'peak MB':>9}")
    for v in VARIANTS:
        m = med[v]
        print(
            f"{v:<12}{m['caller']:>11.1f}{m['process']:>12.1f}{m['wall']:>10.1f}{m['rss_mb']:>9.1f}"
        )
    base, ours = med["batch"], med["greenflash"]
    for k in ("caller", "process", "wall"):
        print(
            f"added {k}: {ours[k] - base[k]:.1f} us per span ({ours[k] / base[k]:.2f}x the floor)"
        )
    print(f"greenflash sent {ours['sent']:.0f} messages per process, dropped {ours['dropped']:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

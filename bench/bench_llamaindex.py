"""LlamaIndex benchmark: per-query overhead of GreenflashInstrumentor, and memory over time.

Usage: ``.venv/bin/python bench/bench_llamaindex.py [--queries N] [--rounds R] [--rss N]``

1. Overhead: a ``VectorStoreIndex(MockEmbedding).as_query_engine()`` with ``MockLLM`` is
   queried N times per round with no instrumentation, with ours (uploading to an exporter
   that discards the payload after serialisation, so mapping and JSON run on our worker
   thread as in production), and with OpenInference's ``LlamaIndexInstrumentor`` exporting
   to an in-memory OpenTelemetry exporter through a ``BatchSpanProcessor``. Instrumentors
   are process-global, so every variant runs in its own subprocess; rounds alternate the
   variants and the table reports the median of the per-round medians.
2. Memory: RSS of a process running 10,000 queries with ours (and with none, for the
   framework's own growth), sampled every 1,000 queries, plus our internal state sizes.

Peers are optional (``pip install openinference-instrumentation-llama-index
opentelemetry-sdk``); a missing one is reported as skipped. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("none", "greenflash", "openinference")


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


class _DiscardExporter:
    """Counts what the uploader would send; the payload is already serialised JSON."""

    def __init__(self) -> None:
        self.bytes = 0
        self.batches = 0

    def export(self, payload: bytes, *, timeout: float) -> Any:
        from gf_integrations.transport.exporters import ExportResult

        self.bytes += len(payload)
        self.batches += 1
        return ExportResult(True, status=200)

    def shutdown(self) -> None:
        pass


def _setup(variant: str) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "src"))
    from llama_index.core import Document, Settings, VectorStoreIndex
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.llms import MockLLM

    Settings.llm = MockLLM(max_tokens=16)
    Settings.embed_model = MockEmbedding(embed_dim=64)
    docs = [Document(text=f"Fact {i}: city {i} lies in country {i}.") for i in range(20)]
    engine = VectorStoreIndex.from_documents(docs).as_query_engine(similarity_top_k=2)
    state: dict[str, Any] = {"engine": engine}
    if variant == "greenflash":
        import gf_integrations as gf
        from gf_integrations.llamaindex import GreenflashInstrumentor

        exporter = _DiscardExporter()
        client = gf.configure(exporter=exporter, max_queue_size=100_000)
        state["inst"] = GreenflashInstrumentor(external_user_id="bench").instrument()
        state["client"], state["exporter"] = client, exporter
    elif variant == "openinference":
        from openinference.instrumentation.llama_index import LlamaIndexInstrumentor
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        provider = TracerProvider()
        span_exporter = InMemorySpanExporter()
        provider.add_span_processor(BatchSpanProcessor(span_exporter))
        LlamaIndexInstrumentor().instrument(tracer_provider=provider)
        state["provider"], state["span_exporter"] = provider, span_exporter
    return state


def _query(state: dict[str, Any], i: int) -> None:
    import gf_integrations as gf

    # one conversation per ten queries, in every variant (the scope itself is cheap)
    with gf.conversation(f"bench-{i // 10}", external_user_id="bench"):
        state["engine"].query(f"Where does city {i % 20} lie?")


def child_overhead(variant: str, queries: int) -> dict[str, Any]:
    state = _setup(variant)
    for i in range(200):  # warm-up
        _query(state, i)
    samples: list[int] = []
    perf = time.perf_counter_ns
    cpu0 = time.process_time()
    for i in range(queries):
        t0 = perf()
        _query(state, i)
        samples.append(perf() - t0)
        if variant == "openinference" and i % 200 == 199:
            state["provider"].force_flush()
            state["span_exporter"].clear()  # keep memory flat; outside the timed call
    drain = 0.0
    if variant == "greenflash":  # the worker's mapping and JSON count as our cost
        t0 = time.perf_counter()
        state["client"].flush(60)
        drain = time.perf_counter() - t0
    elif variant == "openinference":
        state["provider"].force_flush()
    out: dict[str, Any] = {
        "variant": variant,
        "median_us": statistics.median(samples) / 1000,
        "p90_us": statistics.quantiles(samples, n=10)[-1] / 1000,
        "cpu_us": (time.process_time() - cpu0) / queries * 1e6,
    }
    if variant == "greenflash":
        out["drain_s"] = drain
        out["stats"] = {k: v for k, v in state["client"].stats().items() if v}
    return out


def child_rss(variant: str, queries: int) -> dict[str, Any]:
    import gc

    state = _setup(variant)
    for i in range(200):
        _query(state, i)
    points = []
    for i in range(queries):
        _query(state, i)
        if (i + 1) % 1000 == 0:
            if variant == "greenflash":
                state["client"].flush(30)
            gc.collect()
            points.append((i + 1, _rss_kib()))
    out: dict[str, Any] = {"variant": variant, "points": points}
    if variant == "greenflash":
        out["state"] = state["inst"]._state_sizes()
        out["stats"] = {k: v for k, v in state["client"].stats().items() if v}
        # the recorder's dedup memory (core: one global bound on ids and conversations)
        mapper = getattr(state["client"].uploader, "mapper", None)
        out["recorder"] = {
            "conversations": len(getattr(mapper, "_convs", {})),
            "sent_ids": len(getattr(mapper, "_sent", ())),
        }
    return out


def _run_child(args: list[str]) -> dict[str, Any] | None:
    proc = subprocess.run(
        [sys.executable, __file__, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-1:] or ["?"]
        print(f"  {args[1]}: failed ({tail[0]})")
        return None
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _have(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=1500, help="timed queries per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rss", type=int, default=10_000, help="queries for the RSS run (0: skip)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.child:
        mode, variant, n = ns.child
        fn = child_overhead if mode == "overhead" else child_rss
        print(json.dumps(fn(variant, int(n))))
        return

    variants = [v for v in VARIANTS if v != "openinference" or _have("openinference")]
    if "openinference" not in variants:
        print("openinference-instrumentation-llama-index not installed: peer skipped")
    print(
        f"Per-query cost, {ns.queries} queries x {ns.rounds} rounds per variant "
        "(VectorStoreIndex + MockEmbedding + MockLLM), each in its own process"
    )
    medians: dict[str, list[float]] = {v: [] for v in variants}
    p90s: dict[str, list[float]] = {v: [] for v in variants}
    cpus: dict[str, list[float]] = {v: [] for v in variants}
    extra: dict[str, Any] = {}
    for _ in range(ns.rounds):
        for v in variants:
            r = _run_child(["--child", "overhead", v, str(ns.queries)])
            print(f"  round result {v}: {r and round(r['median_us'])} us", flush=True)
            if r is None:
                continue
            medians[v].append(r["median_us"])
            p90s[v].append(r["p90_us"])
            cpus[v].append(r["cpu_us"])
            if "stats" in r:
                extra = r
    base = statistics.median(medians["none"]) if medians.get("none") else None
    cbase = statistics.median(cpus["none"]) if cpus.get("none") else None
    print(
        f"{'variant':<16}{'wall med us':>12}{'p90 us':>9}{'overhead':>10}"
        f"{'cpu/query us':>14}{'cpu overhead':>14}"
    )
    for v in variants:
        if not medians[v]:
            continue
        med = statistics.median(medians[v])
        p90 = statistics.median(p90s[v])
        cpu = statistics.median(cpus[v])
        over = f"{med - base:+.0f}" if base is not None else "-"
        cover = f"{cpu - cbase:+.0f}" if cbase is not None else "-"
        print(f"{v:<16}{med:>12.0f}{p90:>9.0f}{over:>10}{cpu:>14.0f}{cover:>14}")
    if base is not None and cbase is not None and medians.get("openinference"):
        for label, data, b in (("wall median", medians, base), ("cpu", cpus, cbase)):
            ours = statistics.median(data["greenflash"]) - b
            peer = statistics.median(data["openinference"]) - b
            if peer > 0:
                print(f"overhead ours / openinference ({label}): {ours / peer:.2f}")
    if extra:
        print(f"greenflash uploader: drain after run {extra['drain_s']:.2f} s, {extra['stats']}")

    if ns.rss:
        print(f"\nRSS over {ns.rss} queries (KiB, sampled every 1,000 after a 200-query warm-up)")
        for v in ("none", "greenflash"):
            r = _run_child(["--child", "rss", v, str(ns.rss)])
            if r is None:
                continue
            pts = r["points"]
            first, last = pts[0][1], pts[-1][1]
            series = " ".join(str(kib) for _, kib in pts)
            print(f"{v:<12} first {first} last {last} growth {last - first:+d} | {series}")
            if "state" in r:
                print(f"{'':<12} instrumentor state after the run: {r['state']}")
                print(f"{'':<12} recorder dedup state (core): {r['recorder']}")


if __name__ == "__main__":
    main()

"""Fixtures of the OpenTelemetry tests: an SDK provider with our processor, instrumentors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import gf_integrations as gf
from gf_integrations.otel import GreenflashSpanProcessor


@pytest.fixture
def provider(gf_client: gf.GreenflashClient) -> Iterator[TracerProvider]:
    """A fresh SDK provider with our processor and an in-memory exporter next to it."""
    tp = TracerProvider()
    tp.add_span_processor(GreenflashSpanProcessor(client=gf_client))
    exporter = InMemorySpanExporter()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    tp.exporter = exporter  # type: ignore[attr-defined]
    yield tp
    tp.shutdown()


def instrumented(instrumentor: Any, provider: TracerProvider) -> Iterator[TracerProvider]:
    """An OpenTelemetry instrumentor (which patches the openai classes) for one test."""
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield provider
    finally:
        instrumentor.uninstrument()


@pytest.fixture
def openai_v2(provider, monkeypatch) -> Iterator[TracerProvider]:
    from opentelemetry.instrumentation import openai_v2
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    # 2.4 builds its spans with opentelemetry-util-genai's TelemetryHandler, which puts the
    # messages on the span; before, they were log events, which no span processor sees
    if not hasattr(openai_v2, "TelemetryHandler"):
        pytest.skip(
            "opentelemetry-instrumentation-openai-v2 < 2.4 (2.4 needs opentelemetry >= 1.39) "
            "logs messages as events, not on the span"
        )
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "span_only")
    yield from instrumented(OpenAIInstrumentor(), provider)


@pytest.fixture
def openinference(provider) -> Iterator[TracerProvider]:
    from openinference.instrumentation.openai import OpenAIInstrumentor

    yield from instrumented(OpenAIInstrumentor(), provider)

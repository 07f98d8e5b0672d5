"""OpenTelemetry bridge: GenAI spans from any instrumented framework -> Greenflash.

::

    from gf_integrations.otel import instrument_otel

    instrument_otel(external_user_id="u1")   # once, at start-up

Works with every framework or instrumentation that emits spans following the OpenTelemetry
GenAI semantic conventions (Pydantic AI, the contrib OpenAI / Anthropic / Bedrock / Vertex
instrumentations with content capture on, Strands, ...) or OpenInference's attributes.
:class:`GreenflashSpanProcessor` can also be added by hand next to your own exporters::

    provider.add_span_processor(GreenflashSpanProcessor(external_user_id="u1"))
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

try:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
except ImportError:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "gf_integrations.otel needs the OpenTelemetry SDK: pip install 'gf-integrations[otel]'"
    ) from None

from ..kit import IdentityKwargs, Unpack
from .processor import GreenflashSpanProcessor

__all__ = ["GreenflashSpanProcessor", "instrument_otel"]

_lock = threading.Lock()
_installed: weakref.WeakKeyDictionary[Any, GreenflashSpanProcessor] = weakref.WeakKeyDictionary()


def instrument_otel(
    tracer_provider: Any = None,
    **identity: Unpack[IdentityKwargs],
) -> GreenflashSpanProcessor:
    """Add a :class:`GreenflashSpanProcessor` to a tracer provider and return it.

    Args:
        tracer_provider: an SDK ``TracerProvider``; default: the global one. When no SDK
            provider is set globally yet, a plain ``TracerProvider()`` is created and set as
            the global provider (your own exporters can be added to it later). OpenTelemetry
            lets the global provider be set only once, so call this after your own
            OpenTelemetry setup (``logfire.configure()``, ``set_tracer_provider(...)``).
        **identity: the identity keywords, as for :class:`GreenflashSpanProcessor`.

    Calling it again for the same provider returns the processor already installed, with
    the new identity keywords.

    Raises:
        TypeError: when the provider is not an OpenTelemetry SDK ``TracerProvider``.
    """
    provider = tracer_provider
    if provider is None:
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            if type(provider).__name__ != "ProxyTracerProvider":
                raise TypeError(
                    "instrument_otel(): the global tracer provider is a "
                    f"{type(provider).__name__}, not an OpenTelemetry SDK TracerProvider; "
                    "add GreenflashSpanProcessor to your provider yourself"
                )
            trace.set_tracer_provider(TracerProvider())
            provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        raise TypeError(
            "instrument_otel() expects an opentelemetry.sdk.trace.TracerProvider, "
            f"got {type(provider).__name__}"
        )
    processor = GreenflashSpanProcessor(**identity)
    with _lock:
        existing = _installed.get(provider)
        if existing is not None:
            # once per provider: keep the installed processor, take the newest settings
            existing.defaults = processor.defaults
            existing.retarget(identity.get("client"))
            return existing
        provider.add_span_processor(processor)
        _installed[provider] = processor
    return processor

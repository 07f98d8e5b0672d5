"""``GreenflashSpanProcessor``: finished GenAI spans -> neutral events -> the shared recorder.

``on_end`` runs on the thread that ends the span (the host's). It keeps references to the
finished span's attributes and events (immutable once the span has ended), reads the
handful of scalar values that decide what the span is, resolves the conversation, and
queues one event; decoding the JSON message lists happens later on the uploader's worker
(the ``Lazy`` fields of :class:`~gf_integrations.core.events.LLMCall`).
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import StatusCode

from ..client import GreenflashClient, get_client
from ..core.context import Conv
from ..core.events import ChatMessage, LLMCall, ToolResult
from ..kit import IdentityKwargs, Unpack, identity_keywords
from . import convert
from .convert import bridge_failed

_MAX_TRACES = 4096  # traces whose identity attributes are remembered (bounded LRU)
_LLM_OPERATIONS = frozenset({"chat", "text_completion", "generate_content"})


def span_kind(attrs: Mapping[str, Any]) -> str | None:
    """``"llm"`` / ``"tool"`` for GenAI spans, ``"oi_llm"`` / ``"oi_tool"`` for
    OpenInference ones, None for everything else (not recorded)."""
    oi = attrs.get("openinference.span.kind")
    if oi is not None:
        return {"LLM": "oi_llm", "TOOL": "oi_tool"}.get(str(oi))
    op = attrs.get("gen_ai.operation.name")
    if op is None:
        if "gen_ai.tool.name" in attrs:
            return "tool"
        return "llm" if "gen_ai.request.model" in attrs else None
    if op in _LLM_OPERATIONS:
        return "llm"
    if op == "execute_tool":
        return "tool"
    if op == "invoke_agent" and "final_result" in attrs:
        return "agent"  # Pydantic AI's agent run: see _agent_answer
    return None


def _identity_of(attrs: Mapping[str, Any]) -> tuple[str | None, str | None]:
    conv = attrs.get("gen_ai.conversation.id") or attrs.get("session.id")
    user = attrs.get("user.id") or attrs.get("enduser.id")
    return (str(conv) if conv else None, str(user) if user else None)


class _TraceIdentity:
    """Conversation / user ids seen on any span of a trace, for the trace's other spans
    (a client span nested in an agent run often carries neither). Bounded LRU."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._data: collections.OrderedDict[int, tuple[str | None, str | None]] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    def note(self, trace_id: int, conv: str | None, user: str | None) -> None:
        """Remember ids found on a span (only called when it carries one)."""
        with self._lock:
            known = self._data.get(trace_id)
            if known is not None:
                conv, user = conv or known[0], user or known[1]
            self._data[trace_id] = (conv, user)
            self._data.move_to_end(trace_id)
            if len(self._data) > self._limit:
                self._data.popitem(last=False)

    def get(self, trace_id: int) -> tuple[str | None, str | None]:
        with self._lock:
            return self._data.get(trace_id) or (None, None)

    def __len__(self) -> int:
        return len(self._data)


def _attributes(span: ReadableSpan) -> Mapping[str, Any]:
    """The span's attributes, read-only.

    ``span.attributes`` is a proxy over the SDK's ``BoundedAttributes``, whose every lookup
    runs Python code (and a missing key raises inside ``Mapping.get``); the plain dict
    behind it answers the dozen lookups of ``on_end`` several times faster. The SDK makes
    it immutable when the span ends, before processors see it, so keeping a reference for
    the worker is safe. Any other span class goes through the public property.
    """
    inner = getattr(getattr(span, "_attributes", None), "_dict", None)
    if isinstance(inner, dict):
        return inner
    return span.attributes or {}


def _time(ns: int | None) -> dt.datetime | None:
    if ns is None:
        return None
    return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc)


def _error(span: ReadableSpan) -> str | None:
    status = span.status
    if status is None or status.status_code is not StatusCode.ERROR:
        return None
    if status.description:
        return status.description
    for event in span.events:
        if event.name == "exception":
            attrs = event.attributes or {}
            kind = attrs.get("exception.type") or "Error"
            return f"{kind}: {attrs.get('exception.message') or ''}".rstrip(": ")
    return "error"


def _usage(attrs: Mapping[str, Any]) -> dict[str, Any] | None:
    """The span's token counts under their own attribute names (GenAI or OpenInference);
    core/usage.py reads them (usage_kind "otel")."""
    usage = {k: v for k, v in attrs.items() if k.startswith(_USAGE_PREFIXES)}
    return usage or None


_USAGE_PREFIXES = ("gen_ai.usage.", "llm.token_count.")


# -- worker-side conversion (Lazy fields) ---------------------------------------------------


def _genai_inputs(
    attrs: Mapping[str, Any], events: Sequence[tuple[str, Mapping[str, Any]]]
) -> list[ChatMessage]:
    raw = attrs.get("gen_ai.input.messages")
    messages = convert.genai_messages(raw) if raw is not None else convert.event_messages(events)[0]
    instructions = convert.genai_instructions(attrs.get("gen_ai.system_instructions"))
    if instructions and not any(m.get("role") == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": instructions})
    return messages


def _genai_reply(
    attrs: Mapping[str, Any], events: Sequence[tuple[str, Mapping[str, Any]]]
) -> ChatMessage | None:
    raw = attrs.get("gen_ai.output.messages")
    if raw is not None:
        return convert.first_reply(convert.genai_messages(raw))
    return convert.event_messages(events)[1]


def _agent_answer(attrs: Mapping[str, Any], key: str) -> ChatMessage | None:
    """A Pydantic AI run's ``final_result`` when no model reply carried it as text.

    With a structured ``output_type`` the model answers through an output tool: the chat
    span shows only that tool call, and the answer exists only on the agent run span. A
    text answer was already recorded from its chat span, so it gives None here.
    """
    history = convert.genai_messages(attrs.get("pydantic_ai.all_messages"))
    last = next((m for m in reversed(history) if m.get("role") == "assistant"), None)
    if last is None or last.get("content") or not last.get("tool_calls"):
        return None
    result = attrs.get("final_result")
    return {"role": "assistant", "content": convert.as_text(result), "id": f"{key}:final"}


def _oi_reply(attrs: Mapping[str, Any]) -> ChatMessage | None:
    return convert.first_reply(convert.openinference_messages(attrs, "llm.output_messages"))


# -- the processor --------------------------------------------------------------------------


class GreenflashSpanProcessor(SpanProcessor):
    """An OpenTelemetry ``SpanProcessor`` that sends GenAI spans to Greenflash.

    Add it to your ``TracerProvider`` next to your own exporters (or call
    :func:`~gf_integrations.otel.instrument_otel`). Finished spans that follow the GenAI
    semantic conventions (``gen_ai.operation.name`` ``chat`` / ``execute_tool``) or
    OpenInference (``openinference.span.kind`` ``LLM`` / ``TOOL``) become conversation
    messages: the system prompt once, the history (each message once, however often the
    framework resends it), tool calls with parsed arguments, observations parented to
    them, the final answer, model, usage and latency. Other spans are ignored.

    The spans' own ids take part in the identity: ``gen_ai.conversation.id`` /
    ``session.id`` and ``user.id`` / ``enduser.id``, from any span of the same trace;
    without a conversation id, each trace is one conversation.

    Args:
        **identity: the identity keywords (:class:`~gf_integrations.kit.IdentityKwargs`):
            ``external_user_id``, ``external_conversation_id``,
            ``external_organization_id``, ``product_id``, ``properties`` and ``client`` (the
            :class:`~gf_integrations.GreenflashClient` to record through; default: the
            configured one). Process-wide: they are defaults, below a
            ``gf_integrations.conversation(...)`` scope (docs/DESIGN.md section 4).
    """

    def __init__(self, **identity: Unpack[IdentityKwargs]) -> None:
        self.defaults, self._client = identity_keywords("GreenflashSpanProcessor", identity)
        self._recorded_to: GreenflashClient | None = None  # the client last recorded through
        self._traces = _TraceIdentity(_MAX_TRACES)
        self._stopped = False

    def __repr__(self) -> str:
        return f"GreenflashSpanProcessor(client={self._client!r})"

    def retarget(self, client: GreenflashClient | None) -> None:
        """Record through ``client`` from now on (None: the configured default client)."""
        self._client = client

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Remember identity attributes set when a span starts (e.g. on an agent run)."""
        try:
            attrs = _attributes(span)
            if attrs and not self._stopped:
                conv, user = _identity_of(attrs)
                if conv or user:
                    self._traces.note(span.get_span_context().trace_id, conv, user)
        except Exception as exc:
            bridge_failed("on_start", exc)

    def on_end(self, span: ReadableSpan) -> None:
        """Queue one event for a finished GenAI span. Never raises, never blocks."""
        if self._stopped:
            return
        try:
            self._on_end(span)
        except Exception as exc:
            bridge_failed("on_end", exc)

    def shutdown(self) -> None:
        """Stop recording and deliver what is queued (the client itself keeps running)."""
        self._stopped = True
        self.force_flush(5_000)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Deliver every queued message within ``timeout_millis``."""
        # only a client this processor used: at exit, creating the default one (and its
        # worker thread) just to flush nothing would be wrong
        client = self._recorded_to
        if client is None:
            return True
        try:
            return client.flush(timeout_millis / 1000)
        except Exception as exc:
            bridge_failed("force_flush", exc)
            return False

    # -- internals ---------------------------------------------------------------------------

    def _on_end(self, span: ReadableSpan) -> None:
        attrs = _attributes(span)
        ctx = span.context
        if not attrs or ctx is None:
            return
        conv_id, user_id = _identity_of(attrs)
        if conv_id or user_id:
            self._traces.note(ctx.trace_id, conv_id, user_id)
        kind = span_kind(attrs)
        if kind is None:
            return
        if not (conv_id and user_id):
            known_conv, known_user = self._traces.get(ctx.trace_id)
            conv_id, user_id = conv_id or known_conv, user_id or known_user
        gfc = self._client or get_client()
        if not gfc.active:
            return
        self._recorded_to = gfc
        trace_hex = f"{ctx.trace_id:032x}"
        conv = gfc.resolve(
            defaults=self.defaults,
            native_conversation_id=conv_id,
            native_user_id=user_id,
            fallback_conversation_id=f"otel-{trace_hex}",
        )
        span_hex = f"{ctx.span_id:016x}"
        key = f"{trace_hex}-{span_hex}"
        props = {"traceId": trace_hex, "spanId": span_hex}
        if kind in ("llm", "oi_llm"):
            gfc.record(self._llm(span, attrs, conv, key, props, kind == "oi_llm"))
        elif kind == "agent":
            model = attrs.get("model_name") or attrs.get("gen_ai.request.model")
            gfc.record(
                LLMCall(
                    conv,
                    key,
                    reply=functools.partial(_agent_answer, attrs, key),
                    model=str(model) if model else None,
                    ended_at=_time(span.end_time) or dt.datetime.now(dt.timezone.utc),
                    final=True,
                    record_inputs=False,
                    properties=props,
                )
            )
        else:
            gfc.record(self._tool(span, attrs, conv, key, props, kind == "oi_tool"))

    def _llm(
        self,
        span: ReadableSpan,
        attrs: Mapping[str, Any],
        conv: Conv,
        key: str,
        props: dict[str, Any],
        oi: bool,
    ) -> LLMCall:
        if oi:
            messages: Any = functools.partial(
                convert.openinference_messages, attrs, "llm.input_messages"
            )
            reply: Any = functools.partial(_oi_reply, attrs)
            model = attrs.get("llm.model_name")
            provider = attrs.get("llm.provider") or attrs.get("llm.system")
            finish = attrs.get("llm.finish_reason")
        else:
            # the older convention: one span event per message instead of JSON attributes
            events = tuple((e.name, e.attributes or {}) for e in span.events)
            messages = functools.partial(_genai_inputs, attrs, events)
            reply = functools.partial(_genai_reply, attrs, events)
            model = attrs.get("gen_ai.response.model") or attrs.get("gen_ai.request.model")
            provider = attrs.get("gen_ai.provider.name") or attrs.get("gen_ai.system")
            reasons = attrs.get("gen_ai.response.finish_reasons")
            if isinstance(reasons, str):
                finish = reasons
            else:
                finish = reasons[0] if isinstance(reasons, Sequence) and reasons else None
        ended = _time(span.end_time) or dt.datetime.now(dt.timezone.utc)
        return LLMCall(
            conv,
            key,
            messages=messages,
            reply=reply,
            model=str(model) if model else None,
            usage=functools.partial(_usage, attrs),
            usage_kind="otel",
            provider=str(provider) if provider else None,
            finish_reason=str(finish) if finish else None,
            started_at=_time(span.start_time),
            ended_at=ended,
            error=_error(span),
            properties=props,
        )

    def _tool(
        self,
        span: ReadableSpan,
        attrs: Mapping[str, Any],
        conv: Conv,
        key: str,
        props: dict[str, Any],
        oi: bool,
    ) -> ToolResult:
        if oi:
            name = attrs.get("tool.name")
            call_id = attrs.get("tool_call.id") or attrs.get("tool.id")
            arguments = attrs.get("tool.parameters") or attrs.get("input.value")
            result = attrs.get("output.value")
        else:
            name = attrs.get("gen_ai.tool.name")
            call_id = attrs.get("gen_ai.tool.call.id")
            arguments = attrs.get("gen_ai.tool.call.arguments")
            result = attrs.get("gen_ai.tool.call.result")
        ended = _time(span.end_time) or dt.datetime.now(dt.timezone.utc)
        return ToolResult(
            conv,
            key,
            tool_name=str(name) if name else None,
            tool_call_id=str(call_id) if call_id else None,
            # only used when the model's tool call was not seen: small, parsed here
            input=convert.parse_json(arguments) if arguments is not None else None,
            output=result,
            error=_error(span),
            started_at=_time(span.start_time),
            at=ended,
            properties=props,
        )

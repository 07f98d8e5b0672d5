"""Greenflash logging for the Anthropic Python client: ``wrap_anthropic(client)``.

::

    from anthropic import Anthropic
    from gf_integrations.anthropic import wrap_anthropic

    client = wrap_anthropic(Anthropic(), external_user_id="u1")
    client.messages.create(model="claude-sonnet-4-6", max_tokens=1024, messages=[...])

``wrap_anthropic`` returns the very object it was given (an ``Anthropic``,
``AsyncAnthropic``, ``AnthropicBedrock``, ``AnthropicVertex`` or an async twin). It replaces
a few bound methods *on that instance*: ``messages.create`` / ``parse`` / ``stream`` and
their ``beta.messages`` mirrors, and ``copy`` / ``with_options`` so that copies are
instrumented too. Classes are never patched. What the installed SDK lacks (``parse``
before anthropic 0.77, ``beta.messages.stream`` before 0.43, a platform client's ``beta``)
is left alone: nothing is added, nothing fails.

What reaches the caller is exactly what the bare client returns or raises: the same
``Message`` objects, the same ``Stream`` / ``MessageStreamManager`` objects (the raw
stream's private ``_iterator`` is tapped; before anthropic 0.43 the stream helper builds its
own stream on the raw stream's response and client, and is handed a view of that client
that notes the events), the same exceptions. Raw-response calls (``with_raw_response``,
``with_streaming_response``, as LangChain's ``ChatAnthropic`` makes them) are recorded when
the caller parses them; read as bytes or lines, they are not.

Mapping: ``system`` becomes the conversation's system prompt; the new user turn a
``user`` message; ``text`` blocks the reply (a ``thought`` when ``tool_use`` blocks
follow); each ``tool_use`` a ``tool_call``; a ``tool_result`` in the next request an
``observation`` (``tool_error`` with ``is_error``) under its call; ``thinking`` a
``thought`` (redacted thinking as a marker, never the signature); ``model``, ``usage``
(cache read/creation tokens included), ``stop_reason`` (as ``finishReason``) and latency
in the reply's properties.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping, Sequence
from typing import Any, TypeVar

try:
    import anthropic
    from anthropic import AsyncStream, Stream
except ImportError:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "gf_integrations.anthropic needs the Anthropic client: "
        "pip install 'gf-integrations[anthropic]'"
    ) from None

from .client import GreenflashClient
from .core.clientwrap import (
    CallState,
    StreamTap,
    WrapConfig,
    async_method,
    finish_when_collected,
    get_field,
    instrument_copies,
    lazy_usage,
    log_once,
    patch,
    record_failure,
    recorder_for,
    resolve_identity,
    rewrap,
    snapshot,
    sync_method,
    tap_async,
    tap_sync,
    watch_aclose,
    watch_close,
)
from .core.events import ChatMessage, LLMCall, ToolCallSpec
from .core.kit import identity_keywords

__all__ = ["wrap_anthropic"]

_C = TypeVar("_C")


def _classes(*names: str) -> tuple[type, ...]:
    return tuple(cls for n in names if isinstance(cls := getattr(anthropic, n, None), type))


# Foundry, AWS and Google Cloud clients subclass Anthropic; Bedrock and Vertex do not.
_SYNC = _classes("Anthropic", "AnthropicBedrock", "AnthropicVertex", "AnthropicBedrockMantle")
_ASYNC = _classes(
    "AsyncAnthropic", "AsyncAnthropicBedrock", "AsyncAnthropicVertex", "AsyncAnthropicBedrockMantle"
)
_PROVIDERS = (("Bedrock", "bedrock"), ("Vertex", "vertex"), ("Foundry", "foundry"))
_TOOL_USE = frozenset(("tool_use", "server_tool_use", "mcp_tool_use"))
_PLACEHOLDERS = {
    "image": "[image]",
    "document": "[document]",
    "search_result": "[search result]",
    "container_upload": "[file]",
}
REDACTED_THINKING = "[redacted thinking]"


def _helper_reads_the_response() -> bool:
    """anthropic < 0.43: the stream helper's ``MessageStream`` is built from the raw stream's
    response and client and reads the response itself; the raw stream is dropped unread."""
    try:
        from anthropic.lib.streaming import MessageStream

        params = inspect.signature(MessageStream.__init__).parameters
    except Exception:
        return False
    return "raw_stream" not in params and "response" in params


_HELPER_READS_RESPONSE = _helper_reads_the_response()


def _log_once(where: str, exc: BaseException) -> None:
    log_once("Anthropic", where, exc)


class _Config(WrapConfig):
    __slots__ = ()
    label = "Anthropic"


# -- public API -----------------------------------------------------------------------


def wrap_anthropic(
    anthropic_client: _C,
    /,
    *,
    external_user_id: str | None = None,
    external_conversation_id: str | None = None,
    external_organization_id: str | None = None,
    product_id: str | None = None,
    properties: Mapping[str, Any] | None = None,
    client: GreenflashClient | None = None,
    gf_client: GreenflashClient | None = None,
) -> _C:
    """Log every Messages API call of an Anthropic client to Greenflash.

    Returns ``anthropic_client`` itself, still an instance of its class. Copies made with
    ``.with_options(...)`` / ``.copy(...)`` are instrumented with the same settings.
    Wrapping again is harmless: it keeps one layer and takes the newest settings.

    Args:
        anthropic_client: an ``anthropic.Anthropic``, ``AsyncAnthropic``,
            ``AnthropicBedrock``, ``AnthropicVertex`` (or an async twin), positional.
        external_user_id: default user. Precedence for every identity field, first hit
            wins: these arguments > ``gf_integrations.conversation(...)`` > the request's
            ``metadata.user_id`` > configured defaults > a conversation id derived from
            the user and the opening messages (system prompt + first user message), so a
            stateless app that resends its growing history lands in one conversation,
            each message stored once.
        external_conversation_id: default conversation id.
        external_organization_id: default organization id.
        product_id: Greenflash product id.
        properties: conversation properties sent with every call.
        client: the :class:`~gf_integrations.GreenflashClient` to record through
            (default: the configured default client); ``gf_client=`` is an alias.

    Raises:
        TypeError: when ``anthropic_client`` is not an Anthropic client instance, or
            ``client=`` is not a ``GreenflashClient``.
    """
    defaults, recorder = identity_keywords(
        "wrap_anthropic",
        external_user_id=external_user_id,
        external_conversation_id=external_conversation_id,
        external_organization_id=external_organization_id,
        product_id=product_id,
        properties=properties,
        client=client or gf_client,  # gf_client= is the older spelling
    )
    target: Any = anthropic_client
    if not isinstance(target, _SYNC + _ASYNC):
        raise TypeError(
            "wrap_anthropic() expects an anthropic.Anthropic / AsyncAnthropic / "
            f"AnthropicBedrock / AnthropicVertex instance, got {type(target).__name__}"
        )
    name = type(target).__name__
    provider = next((p for part, p in _PROVIDERS if part in name), "anthropic")
    cfg = _Config(defaults, recorder, provider)
    if not rewrap(target, cfg):
        _instrument(target, cfg)
    return anthropic_client


# -- instrumentation ------------------------------------------------------------------


def _instrument(client: Any, cfg: _Config) -> None:
    is_async = isinstance(client, _ASYNC)
    instrument_copies(client, cfg, _instrument)
    resources = [("messages", client.messages)]
    try:
        resources.append(("beta.messages", client.beta.messages))
    except Exception:  # a platform client without the beta resource
        pass
    make = async_method if is_async else sync_method
    for api, res in resources:
        begin = functools.partial(_begin, cfg, api)
        for name in ("create", "parse"):
            original = getattr(res, name, None)
            if callable(original):
                patch(res, name, make(original, begin, _finish, _fail, anthropic.AnthropicError))
        helper = getattr(res, "stream", None)
        if callable(helper):
            patch(res, "stream", _stream_helper(helper, begin, is_async))


def _stream_helper(
    original: Callable[..., Any], begin: Callable[[dict[str, Any]], _Call | None], is_async: bool
) -> Callable[..., Any]:
    """``messages.stream(...)``: the same manager back, its request tapped when entered.

    The helper posts by itself (not through ``create``), so it is logged once, here.
    """

    @functools.wraps(original)
    def stream(*args: Any, **kwargs: Any) -> Any:
        call = begin(kwargs)
        if call is None:
            return original(*args, **kwargs)
        manager = original(*args, **call.kwargs)
        try:
            _tap_manager(manager, call, is_async)
        except Exception as exc:
            _log_once("stream()", exc)
        return manager

    stream.__gf_wrapped__ = True  # type: ignore[attr-defined]
    return stream


def _tap_manager(manager: Any, call: _Call, is_async: bool) -> None:
    # the manager keeps the request as a name-mangled private (`__api_request`): a
    # zero-argument callable (sync) or a coroutine to await (async)
    names = [n for n in vars(manager) if n.endswith("__api_request")]
    if len(names) != 1:
        raise RuntimeError(f"unknown stream manager layout: {type(manager).__name__}")
    name = names[0]
    request = vars(manager)[name]
    if not is_async:

        def send() -> Any:
            call.restart()
            try:
                raw = request()
            except anthropic.AnthropicError as exc:
                _fail(call, exc)
                raise
            if _HELPER_READS_RESPONSE:
                return _tap_helper_stream(call, raw, is_async)
            return _finish(call, raw)

        setattr(manager, name, send)
        return

    setattr(manager, name, _AsyncSend(request, call))


class _AsyncSend:
    """What the async manager awaits on enter; a plain object, so a manager that is never
    entered leaves no un-awaited coroutine of ours behind."""

    __slots__ = ("call", "request")

    def __init__(self, request: Any, call: _Call) -> None:
        self.request = request
        self.call = call

    def __await__(self) -> Generator[Any, None, Any]:
        return self._send().__await__()

    async def _send(self) -> Any:
        self.call.restart()
        try:
            raw = await self.request
        except anthropic.AnthropicError as exc:
            _fail(self.call, exc)
            raise
        if _HELPER_READS_RESPONSE:
            return _tap_helper_stream(self.call, raw, True)
        return _finish(self.call, raw)


def _tap_helper_stream(call: _Call, raw: Any, is_async: bool) -> Any:
    """anthropic < 0.43: the helper's stream reads ``raw``'s response through ``raw``'s
    client, so that client is seen through a view that notes the events; ``raw`` is
    returned unchanged otherwise (and dropped by the helper, unread)."""
    try:
        tap = _Tap(call)
        view = _ClientView(raw._client, tap)
        raw._client = view
        (watch_aclose if is_async else watch_close)(raw.response, tap)
        finish_when_collected(view, tap)  # the view lives as long as the helper's stream
    except Exception as exc:
        _log_once("stream()", exc)
    return raw


class _ClientView:
    """The SDK client as an old stream helper's own stream uses it: the same, except that
    the events it parses are noted in ``tap``, and the stream's end seen (the decoder)."""

    __slots__ = ("__weakref__", "_gf_client", "_gf_tap")

    def __init__(self, client: Any, tap: _Tap) -> None:
        self._gf_client = client
        self._gf_tap = tap

    def __getattr__(self, name: str) -> Any:
        return getattr(self._gf_client, name)

    def _make_sse_decoder(self) -> Any:
        return _Decoder(self._gf_client._make_sse_decoder(), self._gf_tap)

    def _process_response_data(self, *args: Any, **kwargs: Any) -> Any:
        item = self._gf_client._process_response_data(*args, **kwargs)
        try:
            self._gf_tap.keep(item)
        except Exception as exc:
            _log_once("stream()", exc)
        return item

    def _make_status_error(self, *args: Any, **kwargs: Any) -> Any:
        # an SSE `error` event: the stream raises what this returns
        error = self._gf_client._make_status_error(*args, **kwargs)
        self._gf_tap.finish("error", error)
        return error


class _Decoder:
    """An SSE decoder whose iteration marks the stream's end: exhausted, error, abandoned."""

    __slots__ = ("_gf_decoder", "_gf_tap")

    def __init__(self, decoder: Any, tap: _Tap) -> None:
        self._gf_decoder = decoder
        self._gf_tap = tap

    def __getattr__(self, name: str) -> Any:
        return getattr(self._gf_decoder, name)

    def iter_bytes(self, chunks: Iterator[bytes]) -> Iterator[Any]:
        tap = self._gf_tap
        tap.running = True
        try:
            for sse in self._gf_decoder.iter_bytes(chunks):
                tap.running = False
                yield sse
                tap.running = True
        except GeneratorExit:
            tap.finish("abandoned")
            raise
        except BaseException as exc:
            tap.finish("error", exc)
            raise
        tap.finish("exhausted")

    async def aiter_bytes(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[Any]:
        tap = self._gf_tap
        tap.running = True
        try:
            async for sse in self._gf_decoder.aiter_bytes(chunks):
                tap.running = False
                yield sse
                tap.running = True
        except GeneratorExit:
            tap.finish("abandoned")
            raise
        except BaseException as exc:
            tap.finish("error", exc)
            raise
        tap.finish("exhausted")


# -- one call -------------------------------------------------------------------------


class _Call(CallState):
    __slots__ = ("inputs", "system")

    def __init__(self, cfg: _Config, gfc: GreenflashClient, api: str, kwargs: dict[str, Any]):
        super().__init__(cfg, gfc, api, kwargs)
        self.inputs: Sequence[Any] = ()
        self.system: Any = None


def _begin(cfg: _Config, api: str, kwargs: dict[str, Any]) -> _Call | None:
    """Decide whether to record and snapshot what we need. None means pass through."""
    try:
        gfc = recorder_for(cfg, kwargs)
        if gfc is None:
            return None
        call = _Call(cfg, gfc, api, kwargs)
        msgs = snapshot(call, kwargs, "messages")
        call.inputs = msgs
        system = kwargs.get("system")
        call.system = system if isinstance(system, str) else snapshot(call, call.kwargs, "system")
        metadata = kwargs.get("metadata")
        user = get_field(metadata, "user_id") if isinstance(metadata, Mapping) else None
        call.conv = resolve_identity(
            call,
            native_conversation_id=None,
            native_user_id=user if isinstance(user, str) and user else None,
            opening=lambda: _opening(call.system, msgs),
            prefix="anthropic",
        )
        return call
    except Exception as exc:
        _log_once("before the call", exc)
        return None


def _fail(call: _Call, exc: BaseException) -> None:
    record_failure(call, exc, functools.partial(_inputs, call.system, call.inputs))


def _finish(call: _Call, result: Any) -> Any:
    """Record a completed call (or tap a stream). Returns ``result`` unchanged."""
    try:
        if isinstance(result, Stream):
            tap_sync(result, _Tap(call))
        elif isinstance(result, AsyncStream):
            tap_async(result, _Tap(call))
        else:
            _record_message(call, result)
    except Exception as exc:
        _log_once("after the call", exc)
    return result


def _record_message(call: _Call, message: Any) -> None:
    stop = getattr(message, "stop_reason", None)
    call.gfc.record(
        LLMCall(
            call.conv,
            call.key,
            messages=functools.partial(_inputs, call.system, call.inputs),
            reply=functools.partial(_assistant, getattr(message, "content", None), None),
            model=getattr(message, "model", None) or call.model,
            usage=lazy_usage(getattr(message, "usage", None)),
            provider=call.cfg.provider,
            finish_reason=stop if isinstance(stop, str) else None,
            started_at=call.started,
            properties=call.properties(getattr(message, "id", None)),
        )
    )


# -- streams --------------------------------------------------------------------------


class _Tap(StreamTap[_Call]):
    """Records a raw Messages stream (``message_start`` ... ``message_stop``)."""

    __slots__ = ()

    def record(self, how: str, error: BaseException | None) -> None:
        call, events = self.call, self.items
        started: Any = None
        delta: Any = None
        stopped = False
        for event in events:
            kind = getattr(event, "type", None)
            if kind == "message_start":
                started = event.message
            elif kind == "message_delta":
                delta = event
            elif kind == "message_stop":
                stopped = True
        if started is None and error is not None:
            record_failure(call, error, functools.partial(_inputs, call.system, call.inputs))
            return
        stop = getattr(getattr(delta, "delta", None), "stop_reason", None)
        complete = how == "exhausted" and error is None and stopped
        call.gfc.record(
            LLMCall(
                call.conv,
                call.key,
                messages=functools.partial(_inputs, call.system, call.inputs),
                reply=functools.partial(_stream_reply, events),
                model=getattr(started, "model", None) or call.model,
                usage=lazy_usage(_MergedUsage(started, delta)),
                provider=call.cfg.provider,
                finish_reason=stop if isinstance(stop, str) else None,
                started_at=call.started,
                error=error,
                partial=not complete,
                properties=self.stream_props(how, getattr(started, "id", None)),
            )
        )


class _MergedUsage:
    """``message_start`` usage updated by the cumulative ``message_delta`` usage; dumped
    on the worker (through :class:`LazyUsage`)."""

    __slots__ = ("delta", "start")

    def __init__(self, start: Any, delta: Any) -> None:
        self.start = start
        self.delta = delta

    def model_dump(self, exclude_none: bool = True) -> dict[str, Any]:
        data = dict(lazy_usage(getattr(self.start, "usage", None)) or {})
        data.update(lazy_usage(getattr(self.delta, "usage", None)) or {})
        return data


def _stream_reply(events: Sequence[Any]) -> ChatMessage:
    """The reply rebuilt from the content block events that arrived (all, or up to a cut)."""
    slots: dict[int, tuple[Any, list[str]]] = {}
    for event in events:
        kind = getattr(event, "type", None)
        if kind == "content_block_start":
            slots[event.index] = (event.content_block, [])
        elif kind == "content_block_delta" and event.index in slots:
            d = event.delta
            piece = getattr(d, "text", None) or getattr(d, "partial_json", None)
            piece = piece or getattr(d, "thinking", None)
            if isinstance(piece, str):
                slots[event.index][1].append(piece)
    content: list[Any] = []
    for _, (block, pieces) in sorted(slots.items()):
        kind = getattr(block, "type", None)
        got = "".join(pieces)
        if kind == "text":
            content.append({"type": "text", "text": got or getattr(block, "text", "")})
        elif kind == "thinking":
            content.append({"type": "thinking", "thinking": got})
        elif kind in _TOOL_USE:
            # the JSON text as streamed: the recorder parses it (or keeps a cut one raw)
            args = got if got else getattr(block, "input", None)
            content.append({"type": kind, "id": block.id, "name": block.name, "input": args})
        else:
            content.append(block)
    return _assistant(content, None)


# -- conversion to neutral messages (worker thread) ----------------------------------


def _block_text(content: Any, sep: str = "\n") -> str | None:
    """A string, or blocks as text: text blocks kept, media become placeholders."""
    if content is None or isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content if isinstance(content, (list, tuple)) else ():
        kind = get_field(block, "type")
        if kind == "text":
            parts.append(get_field(block, "text") or "")
        elif kind in _PLACEHOLDERS:
            parts.append(_PLACEHOLDERS[kind])
    return sep.join(parts)


def _system_text(system: Any) -> str:
    return _block_text(system, "\n\n") or ""


def _opening(system: Any, msgs: Sequence[Any]) -> tuple[str, str]:
    """(system prompt, first user message) for a derived conversation id."""
    for m in msgs:
        if get_field(m, "role") == "user":
            return _system_text(system), _block_text(get_field(m, "content")) or ""
    return _system_text(system), ""


def _assistant(content: Any, tool_names: dict[str, str] | None) -> ChatMessage:
    """An assistant turn (a reply, or one resent as history) as one neutral message.

    Text blocks join without a separator: with citations the API splits one answer into
    several text blocks.
    """
    if content is None or isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[ToolCallSpec] = []
    for block in content if isinstance(content, (list, tuple)) else ():
        kind = get_field(block, "type")
        if kind == "text":
            texts.append(get_field(block, "text") or "")
        elif kind in _TOOL_USE:
            name = get_field(block, "name") or "unknown_tool"
            call_id = get_field(block, "id")
            calls.append({"id": call_id, "name": name, "arguments": get_field(block, "input")})
            if tool_names is not None and call_id:
                tool_names[str(call_id)] = name
        elif kind == "thinking":
            thoughts.append(get_field(block, "thinking") or "")
        elif kind == "redacted_thinking":
            thoughts.append(REDACTED_THINKING)  # encrypted: only the fact that it happened
        # server tool results (web search, code execution) and compaction are skipped
    msg: ChatMessage = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        msg["tool_calls"] = calls
    if any(thoughts):
        msg["reasoning"] = "\n\n".join(t for t in thoughts if t)
    return msg


def _user(content: Any, tool_names: dict[str, str], out: list[ChatMessage]) -> None:
    """A user turn: its ``tool_result`` blocks become tool messages, the rest the user's."""
    if content is None or isinstance(content, str):
        out.append({"role": "user", "content": content})
        return
    rest: list[Any] = []
    for block in content if isinstance(content, (list, tuple)) else ():
        if get_field(block, "type") != "tool_result":
            rest.append(block)
            continue
        call_id = get_field(block, "tool_use_id")
        out.append(
            {
                "role": "tool",
                "content": _block_text(get_field(block, "content")),
                "tool_call_id": call_id,
                "name": tool_names.get(call_id) if isinstance(call_id, str) else None,
                "status": "error" if get_field(block, "is_error") else None,
            }
        )
    if rest:
        out.append({"role": "user", "content": _block_text(rest)})


def _inputs(system: Any, msgs: Sequence[Any]) -> list[ChatMessage]:
    out: list[ChatMessage] = []
    text = _system_text(system)
    if text:
        out.append({"role": "system", "content": text})
    tool_names: dict[str, str] = {}
    for m in msgs:
        role = get_field(m, "role")
        if role == "assistant":
            out.append(_assistant(get_field(m, "content"), tool_names))
        elif role == "user":
            _user(get_field(m, "content"), tool_names, out)
    return out

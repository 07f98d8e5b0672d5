"""Greenflash logging for the OpenAI Python client: ``wrap_openai(client)``.

::

    from openai import OpenAI
    from gf_integrations.openai import wrap_openai

    client = wrap_openai(OpenAI(), external_user_id="u1")
    client.chat.completions.create(model="gpt-4o-mini", messages=[...])

``wrap_openai`` returns the very object it was given (still an ``OpenAI``,
``AsyncOpenAI``, ``AzureOpenAI`` or ``AsyncAzureOpenAI``). It replaces a few bound methods
*on that instance* (chat completions ``create``/``parse``, responses
``create``/``parse``, embeddings ``create``, and ``copy``/``with_options`` so that copies
are instrumented too). Classes are never patched: other clients in the process, e.g. the
ones LangChain creates internally, stay untouched and pay nothing, and the wrapper does
not stack with peers that patch the classes.

What reaches the caller is exactly what the bare client returns or raises: the same
response objects, the same ``openai.Stream`` / ``AsyncStream`` objects (their private
``_iterator`` is tapped), the same exceptions. Raw-response calls (``with_raw_response``,
``with_streaming_response``, which the OpenAI Agents SDK and LangChain's ``ChatOpenAI``
make) are recorded when the caller parses them; read as bytes or lines, they are not.
"""

from __future__ import annotations

import collections
import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

try:
    import openai
    from openai import AsyncStream, Stream
except ImportError:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "gf_integrations.openai needs the OpenAI client: pip install 'gf-integrations[openai]'"
    ) from None

from .client import GreenflashClient
from .core.clientwrap import (
    CallState,
    StreamTap,
    WrapConfig,
    async_method,
    get_field,
    identity_settings,
    instrument_copies,
    is_raw,
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
)
from .core.context import IdentityDefaults
from .core.events import ChatMessage, Embedding, LLMCall, ToolCallSpec
from .core.targets import AnswerRef, BoundedMap, register_target_resolver

__all__ = ["wrap_openai"]

_C = TypeVar("_C")

_MAX_CHAINS = 10_000


def _log_once(where: str, exc: BaseException) -> None:
    log_once("OpenAI", where, exc)


# -- configuration --------------------------------------------------------------------


class _Config(WrapConfig):
    """``wrap_openai``'s settings: the shared identity settings and ``stream_usage``."""

    __slots__ = ("stream_usage",)
    label = "OpenAI"

    def __init__(
        self,
        defaults: IdentityDefaults,
        gf_client: GreenflashClient | None,
        stream_usage: bool,
        provider: str,
    ) -> None:
        super().__init__(defaults, gf_client, provider)
        self.stream_usage = stream_usage


class _Chains:
    """Bounded LRU: Responses ``response.id`` -> conversation id, for
    ``previous_response_id`` chains."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._data: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: str, value: str) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            if len(self._data) > self._limit:
                self._data.popitem(last=False)


_chains = _Chains(_MAX_CHAINS)
# response id -> the answer it produced, for gf.rate(response) (see core/targets.py)
_answers: BoundedMap[str, AnswerRef] = BoundedMap()


def _remember_answer(response_id: Any, call: _Call) -> None:
    if isinstance(response_id, str) and response_id:
        _answers.put(response_id, AnswerRef(call.conv, call.key))


# -- public API -----------------------------------------------------------------------


def wrap_openai(
    openai_client: _C,
    /,
    *,
    external_user_id: str | None = None,
    external_conversation_id: str | None = None,
    external_organization_id: str | None = None,
    product_id: str | None = None,
    properties: Mapping[str, Any] | None = None,
    client: GreenflashClient | None = None,
    gf_client: GreenflashClient | None = None,
    stream_usage: bool = False,
) -> _C:
    """Log every chat, Responses and embeddings call of an OpenAI client to Greenflash.

    Returns ``openai_client`` itself, still an instance of its class. Copies made with
    ``.with_options(...)`` / ``.copy(...)`` are instrumented with the same settings.
    Wrapping again is harmless: it keeps one layer and takes the newest settings.

    Args:
        openai_client: an ``openai.OpenAI``, ``AsyncOpenAI``, ``AzureOpenAI`` or
            ``AsyncAzureOpenAI`` (positional).
        external_user_id: default user. Precedence for every identity field, first hit
            wins: these arguments > ``gf_integrations.conversation(...)`` > the
            request's ``user`` / ``safety_identifier`` and the Responses
            ``conversation`` / ``previous_response_id`` chain > configured defaults >
            a conversation id derived from the user and the opening messages (system
            prompt + first user message), so a stateless app that resends its growing
            history lands in one conversation, each message stored once.
        external_conversation_id: default conversation id.
        external_organization_id: default organization id.
        product_id: Greenflash product id.
        properties: conversation properties sent with every call.
        client: the :class:`~gf_integrations.GreenflashClient` to record through
            (default: the configured default client); ``gf_client=`` is an alias.
        stream_usage: ask chat streams for token usage
            (``stream_options={"include_usage": True}``) when the caller did not; the
            extra usage-only chunk (``choices == []``) is then hidden from the caller.

    Raises:
        TypeError: when ``openai_client`` is not an OpenAI client instance.
    """
    defaults, recorder = identity_settings(
        "wrap_openai",
        external_user_id=external_user_id,
        external_conversation_id=external_conversation_id,
        external_organization_id=external_organization_id,
        product_id=product_id,
        properties=properties,
        client=client,
        gf_client=gf_client,
    )
    target: Any = openai_client
    if not isinstance(target, (openai.OpenAI, openai.AsyncOpenAI)):
        raise TypeError(
            "wrap_openai() expects an openai.OpenAI / AsyncOpenAI / AzureOpenAI / "
            f"AsyncAzureOpenAI instance, got {type(target).__name__}"
        )
    azure = isinstance(target, (openai.AzureOpenAI, openai.AsyncAzureOpenAI))
    cfg = _Config(defaults, recorder, stream_usage, "azure" if azure else "openai")
    if not rewrap(target, cfg):
        _instrument(target, cfg)
    return openai_client


# -- instrumentation ------------------------------------------------------------------


def _instrument(client: Any, cfg: _Config) -> None:
    make = async_method if isinstance(client, openai.AsyncOpenAI) else sync_method
    instrument_copies(client, cfg, _instrument)
    resources: list[tuple[str, Any]] = [("chat", client.chat.completions)]
    try:
        # older code calls client.beta.chat.completions.parse: a separate instance
        resources.append(("chat", client.beta.chat.completions))
    except Exception:
        pass
    resources += [("responses", client.responses), ("embeddings", client.embeddings)]
    for api, res in resources:
        begin = functools.partial(_begin, cfg, api)
        for name in ("create", "parse") if api != "embeddings" else ("create",):
            patch(res, name, make(getattr(res, name), begin, _finish, _fail, openai.OpenAIError))


# -- one call -------------------------------------------------------------------------


class _Call(CallState):
    __slots__ = ("chained", "hide_usage", "inputs", "instructions")

    def __init__(self, cfg: _Config, gfc: GreenflashClient, api: str, kwargs: dict[str, Any]):
        super().__init__(cfg, gfc, api, kwargs)
        self.cfg: _Config = cfg
        self.hide_usage = False
        self.chained = False
        self.instructions: Any = None
        self.inputs: Sequence[Any] = ()

    def properties(self, response_id: Any = None) -> dict[str, Any]:
        props = super().properties(response_id)
        if self.cfg.provider == "azure" and self.model:
            props["deployment"] = self.model
        return props


def _begin(cfg: _Config, api: str, kwargs: dict[str, Any]) -> _Call | None:
    """Decide whether to record and snapshot what we need. None means pass through."""
    try:
        gfc = recorder_for(cfg, kwargs)
        if gfc is None:
            return None
        call = _Call(cfg, gfc, api, kwargs)
        if api == "chat":
            _begin_chat(call, kwargs)
        elif api == "responses":
            _begin_responses(call, kwargs)
        else:
            call.conv = _resolve(call, None, None)
        return call
    except Exception as exc:
        _log_once("before the call", exc)
        return None


def _begin_chat(call: _Call, kwargs: dict[str, Any]) -> None:
    msgs = snapshot(call, kwargs, "messages")
    call.inputs = msgs
    # a raw stream is read by the caller as it came: never add the usage chunk to it
    if (
        call.cfg.stream_usage
        and kwargs.get("stream") is True
        and not is_raw(kwargs.get("extra_headers"))
    ):
        options = kwargs.get("stream_options")
        options = options if isinstance(options, Mapping) else {}
        if "include_usage" not in options:
            call.kwargs = {**call.kwargs, "stream_options": {**options, "include_usage": True}}
            call.hide_usage = True
    call.conv = _resolve(call, None, lambda: _chat_opening(msgs))


def _begin_responses(call: _Call, kwargs: dict[str, Any]) -> None:
    raw = kwargs.get("input")
    items: list[Any] = (
        [{"role": "user", "content": raw}]
        if isinstance(raw, str)
        else (snapshot(call, kwargs, "input"))
    )
    call.inputs = items
    instructions = kwargs.get("instructions")
    call.instructions = instructions if isinstance(instructions, str) else None
    native: str | None = None
    conversation = kwargs.get("conversation")
    if isinstance(conversation, str):
        native = conversation
    elif isinstance(conversation, Mapping) and isinstance(conversation.get("id"), str):
        native = conversation["id"]
    previous = kwargs.get("previous_response_id")
    if isinstance(previous, str) and previous:
        call.chained = True
        if native is None:
            # an unknown id (another process, evicted): the chain continues under it
            native = _chains.get(previous) or f"openai-response-{previous}"
    elif native is not None:
        call.chained = True
    call.conv = _resolve(call, native, lambda: _responses_opening(call.instructions, items))


def _resolve(
    call: _Call, native_conv: str | None, opening: Callable[[], tuple[str, str]] | None
) -> Any:
    kwargs = call.kwargs
    user = kwargs.get("user")
    native_user = user if isinstance(user, str) and user else None
    if native_user is None:
        safety = kwargs.get("safety_identifier")
        native_user = safety if isinstance(safety, str) and safety else None
    return resolve_identity(
        call,
        native_conversation_id=native_conv,
        native_user_id=native_user,
        opening=opening,
        prefix="openai",
    )


def _fail(call: _Call, exc: BaseException) -> None:
    record_failure(call, exc, _messages_fn(call, None))


def _finish(call: _Call, result: Any) -> Any:
    """Record a completed call (or tap a stream). Returns ``result`` unchanged."""
    try:
        if isinstance(result, Stream):
            tap_sync(result, _Tap(call))
        elif isinstance(result, AsyncStream):
            tap_async(result, _Tap(call))
        elif call.api == "chat":
            _record_chat(call, result)
        elif call.api == "responses":
            _record_response(call, result, None)
        else:
            _record_embeddings(call, result)
    except Exception as exc:
        _log_once("after the call", exc)
    return result


def _messages_fn(call: _Call, response_id: str | None) -> Callable[[], list[ChatMessage]]:
    if call.api == "chat":
        return functools.partial(_chat_inputs, call.inputs)
    prefix = (response_id or call.key) if call.chained else None
    return functools.partial(_responses_inputs, call.instructions, call.inputs, prefix)


def _record_chat(call: _Call, completion: Any) -> None:
    choices = getattr(completion, "choices", None) or ()
    first = choices[0] if choices else None
    props = call.properties(getattr(completion, "id", None))
    if len(choices) > 1:
        props["choices"] = len(choices)
    call.gfc.record(
        LLMCall(
            call.conv,
            call.key,
            messages=_messages_fn(call, None),
            reply=functools.partial(_chat_reply, first),
            model=getattr(completion, "model", None) or call.model,
            usage=lazy_usage(getattr(completion, "usage", None)),
            provider=call.cfg.provider,
            finish_reason=getattr(first, "finish_reason", None),
            started_at=call.started,
            properties=props,
        )
    )
    _remember_answer(getattr(completion, "id", None), call)


def _record_response(call: _Call, response: Any, extra: Mapping[str, Any] | None) -> None:
    rid = getattr(response, "id", None)
    rid = rid if isinstance(rid, str) else None
    conv = call.conv
    if rid:
        _chains.put(rid, conv.external_conversation_id)
    props = call.properties(rid)
    if extra:
        props.update(extra)
    status = getattr(response, "status", None)
    incomplete = getattr(response, "incomplete_details", None)
    reason = getattr(incomplete, "reason", None) or status
    error = getattr(response, "error", None)
    call.gfc.record(
        LLMCall(
            conv,
            call.key,
            messages=_messages_fn(call, rid),
            reply=functools.partial(_responses_reply, response, rid if call.chained else None),
            model=getattr(response, "model", None) or call.model,
            usage=lazy_usage(getattr(response, "usage", None)),
            provider=call.cfg.provider,
            finish_reason=reason if isinstance(reason, str) else None,
            started_at=call.started,
            error=(getattr(error, "message", None) or str(error)) if error else None,
            properties=props,
        )
    )
    _remember_answer(rid, call)


def _record_embeddings(call: _Call, result: Any) -> None:
    data = getattr(result, "data", None) or ()
    dims: int | None = None
    if data:
        vector = getattr(data[0], "embedding", None)
        if isinstance(vector, str):  # encoding_format="base64": float32 bytes
            dims = (len(vector) * 3 // 4 - vector[-2:].count("=")) // 4
        elif vector is not None:
            dims = len(vector)
    call.gfc.record(
        Embedding(
            call.conv,
            call.key,
            model=getattr(result, "model", None) or call.model,
            count=len(data),
            dimensions=dims,
            usage=lazy_usage(getattr(result, "usage", None)),
            started_at=call.started,
            properties=call.properties(),
        )
    )


# -- streams --------------------------------------------------------------------------


class _Tap(StreamTap[_Call]):
    """A chat or Responses stream; hides the usage-only chunk we asked for."""

    __slots__ = ("usage",)

    def __init__(self, call: _Call) -> None:
        super().__init__(call)
        self.usage: Any = None

    def keep(self, item: Any) -> bool:
        if self.call.hide_usage and not item.choices:
            self.usage = item.usage  # the usage chunk we asked for: not the caller's
            return False
        return super().keep(item)

    def record(self, how: str, error: BaseException | None) -> None:
        if self.call.api == "chat":
            self._finish_chat(how, error)
        else:
            self._finish_responses(how, error)

    def _finish_chat(self, how: str, error: BaseException | None) -> None:
        call, items = self.call, self.items
        first = items[0] if items else None
        usage = self.usage
        finish_reason = None
        for chunk in reversed(items):
            if usage is None and getattr(chunk, "usage", None) is not None:
                usage = chunk.usage
            if chunk.choices:
                finish_reason = chunk.choices[0].finish_reason
                break
        complete = how == "exhausted" and error is None
        call.gfc.record(
            LLMCall(
                call.conv,
                call.key,
                messages=_messages_fn(call, None),
                reply=functools.partial(_chat_stream_reply, items),
                model=getattr(first, "model", None) or call.model,
                usage=lazy_usage(usage),
                provider=call.cfg.provider,
                finish_reason=finish_reason,
                started_at=call.started,
                error=error,
                partial=not complete,
                properties=self.stream_props(how, getattr(first, "id", None)),
            )
        )
        _remember_answer(getattr(first, "id", None), call)

    def _finish_responses(self, how: str, error: BaseException | None) -> None:
        call, items = self.call, self.items
        for event in reversed(items):
            if getattr(event, "type", None) in (
                "response.completed",
                "response.incomplete",
                "response.failed",
            ):
                _record_response(call, event.response, self.stream_props(how, None))
                return
        # ended before the final event: rebuild what arrived, mark it partial
        started = next(
            (e.response for e in items if getattr(e, "type", None) == "response.created"), None
        )
        rid = getattr(started, "id", None)
        rid = rid if isinstance(rid, str) else None
        if rid:
            _chains.put(rid, call.conv.external_conversation_id)
        if error is None:
            for event in items:
                if getattr(event, "type", None) == "error":
                    error_text = getattr(event, "message", None) or "stream error"
                    error = RuntimeError(str(error_text))
        call.gfc.record(
            LLMCall(
                call.conv,
                call.key,
                messages=_messages_fn(call, rid),
                reply=functools.partial(
                    _responses_partial_reply, items, rid if call.chained else None
                ),
                model=getattr(started, "model", None) or call.model,
                provider=call.cfg.provider,
                started_at=call.started,
                error=error,
                partial=True,
                properties=self.stream_props(how, rid),
            )
        )
        _remember_answer(rid, call)


# -- conversion to neutral messages (worker thread) ----------------------------------


_get = get_field


_PART_PLACEHOLDERS = {
    "image_url": "[image]",
    "input_image": "[image]",
    "input_audio": "[audio]",
    "file": "[file]",
    "input_file": "[file]",
}


def _text(content: Any) -> str | None:
    """Message content (str, or a list of parts) as text; media become placeholders."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        parts: list[str] = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
                continue
            kind = _get(part, "type")
            text = _get(part, "text")
            if isinstance(text, str):
                parts.append(text)
            elif kind == "refusal":
                continue
            elif kind in _PART_PLACEHOLDERS:
                parts.append(_PART_PLACEHOLDERS[kind])
        return "\n".join(parts)
    return str(content)


def _refusal_of(content: Any) -> str | None:
    if isinstance(content, (list, tuple)):
        texts = [_get(p, "refusal") for p in content if _get(p, "type") == "refusal"]
        found = [t for t in texts if isinstance(t, str) and t]
        return "\n".join(found) or None
    return None


def _opening_text(content: Any) -> str:
    return _text(content) or ""


def _chat_opening(msgs: Sequence[Any]) -> tuple[str, str]:
    """(system prompt, first user message) for a derived conversation id."""
    system: list[str] = []
    for m in msgs:
        role = _get(m, "role")
        if role == "user":
            return "\n\n".join(system), _opening_text(_get(m, "content"))
        if role in ("system", "developer"):
            system.append(_opening_text(_get(m, "content")))
    return "\n\n".join(system), ""


def _responses_opening(instructions: str | None, items: Sequence[Any]) -> tuple[str, str]:
    system, first_user = _chat_opening([m for m in items if _get(m, "role") is not None])
    if instructions:
        system = f"{instructions}\n\n{system}" if system else instructions
    return system, first_user


def _custom_input(text: Any) -> Any:
    """A custom tool's freeform input is plain text, not JSON arguments: keep it as is."""
    return {"input": text} if isinstance(text, str) else text


def _chat_tool_calls(raw: Any) -> list[ToolCallSpec]:
    calls: list[ToolCallSpec] = []
    for tc in raw or ():
        fn = _get(tc, "function")
        if fn is not None:
            calls.append(
                {
                    "id": _get(tc, "id"),
                    "name": _get(fn, "name") or "unknown_tool",
                    "arguments": _get(fn, "arguments"),
                }
            )
            continue
        custom = _get(tc, "custom")
        if custom is not None:
            calls.append(
                {
                    "id": _get(tc, "id"),
                    "name": _get(custom, "name") or "unknown_tool",
                    "arguments": _custom_input(_get(custom, "input")),
                }
            )
    return calls


def _reasoning_extra(msg: Any) -> str | None:
    """Reasoning text some OpenAI-compatible servers add (DeepSeek, vLLM, OpenRouter)."""
    # pydantic models keep unknown fields in model_extra; asking getattr for a missing
    # name goes through pydantic's slow __getattr__ miss path
    source = msg if isinstance(msg, Mapping) else getattr(msg, "model_extra", None)
    if not source:
        return None
    for name in ("reasoning_content", "reasoning"):
        value = source.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _chat_message(m: Any, tool_names: dict[str, str]) -> ChatMessage | None:
    role = _get(m, "role")
    content = _get(m, "content")
    if role in ("system", "developer"):
        return {"role": "system", "content": _text(content)}
    if role == "user":
        return {"role": "user", "content": _text(content)}
    if role == "assistant":
        msg: ChatMessage = {"role": "assistant", "content": _text(content)}
        calls = _chat_tool_calls(_get(m, "tool_calls"))
        legacy = _get(m, "function_call")
        if legacy is not None and not calls:
            calls = [
                {
                    "id": None,
                    "name": _get(legacy, "name") or "unknown_tool",
                    "arguments": _get(legacy, "arguments"),
                }
            ]
        if calls:
            msg["tool_calls"] = calls
            for c in calls:
                if c.get("id"):
                    tool_names[str(c["id"])] = c["name"]
        refusal = _get(m, "refusal") or _refusal_of(content)
        if refusal:
            msg["refusal"] = refusal
        if msg["content"] is None:
            audio = _get(m, "audio")
            transcript = _get(audio, "transcript") if audio is not None else None
            if isinstance(transcript, str):
                msg["content"] = transcript
        reasoning = _reasoning_extra(m)
        if reasoning:
            msg["reasoning"] = reasoning
        return msg
    if role in ("tool", "function"):
        call_id = _get(m, "tool_call_id")
        name = _get(m, "name") or (tool_names.get(call_id) if call_id else None)
        return {"role": "tool", "content": _text(content), "tool_call_id": call_id, "name": name}
    return None


def _chat_inputs(msgs: Sequence[Any]) -> list[ChatMessage]:
    tool_names: dict[str, str] = {}
    out: list[ChatMessage] = []
    for m in msgs:
        converted = _chat_message(m, tool_names)
        if converted is not None:
            out.append(converted)
    return out


def _chat_reply(choice: Any) -> ChatMessage | None:
    if choice is None:
        return None
    message = getattr(choice, "message", None)
    if message is None:
        return None
    return _chat_message(message, {})


def _chat_stream_reply(chunks: Sequence[Any]) -> ChatMessage | None:
    content: list[str] = []
    refusal: list[str] = []
    reasoning: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    seen = False
    for chunk in chunks:
        for choice in getattr(chunk, "choices", None) or ():
            if getattr(choice, "index", 0) != 0:
                continue
            seen = True
            delta = choice.delta
            if delta is None:
                continue
            if delta.content:
                content.append(delta.content)
            if getattr(delta, "refusal", None):
                refusal.append(delta.refusal)
            extra = _reasoning_extra(delta)
            if extra:
                reasoning.append(extra)
            for tc in delta.tool_calls or ():
                slot = calls.setdefault(tc.index, {"id": None, "name": None, "args": []})
                if tc.id and not slot["id"]:
                    slot["id"] = tc.id
                fn = tc.function
                if fn is not None:
                    if fn.name and not slot["name"]:
                        slot["name"] = fn.name
                    if fn.arguments:
                        slot["args"].append(fn.arguments)
    if not seen:
        return None
    msg: ChatMessage = {"role": "assistant", "content": "".join(content) if content else None}
    if calls:
        msg["tool_calls"] = [
            {
                "id": slot["id"],
                "name": slot["name"] or "unknown_tool",
                "arguments": "".join(slot["args"]),
            }
            for _, slot in sorted(calls.items())
        ]
    if refusal:
        msg["refusal"] = "".join(refusal)
    if reasoning:
        msg["reasoning"] = "".join(reasoning)
    return msg


def _reasoning_text(item: Any) -> str | None:
    texts = [_get(s, "text") for s in _get(item, "summary") or ()]
    if not any(texts):
        texts = [_get(c, "text") for c in _get(item, "content") or ()]
    found = [t for t in texts if isinstance(t, str) and t]
    return "\n\n".join(found) or None


def _items_to_messages(items: Sequence[Any]) -> list[ChatMessage]:
    """Responses input/output items -> neutral messages.

    Consecutive assistant-side items (message, reasoning, function calls) merge into one
    assistant message, the same way for a reply's ``output`` and for that output resent
    as input, so a resent history gets the same message ids.
    """
    out: list[ChatMessage] = []
    tool_names: dict[str, str] = {}
    current: ChatMessage | None = None
    texts: list[str] = []
    reasoning: list[str] = []

    def assistant() -> ChatMessage:
        nonlocal current
        if current is None:
            current = {"role": "assistant", "content": None}
            out.append(current)
        return current

    def close() -> None:
        nonlocal current
        if current is not None:
            if texts:
                current["content"] = "\n\n".join(texts)
            if reasoning:
                current["reasoning"] = "\n\n".join(reasoning)
            texts.clear()
            reasoning.clear()
        current = None

    for item in items:
        kind = _get(item, "type")
        role = _get(item, "role")
        if role is not None and kind in (None, "message"):
            content = _get(item, "content")
            if role == "assistant":
                msg = assistant()
                text = _text(content)
                if text:
                    texts.append(text)
                refusal = _refusal_of(content)
                if refusal:
                    msg["refusal"] = refusal
                continue
            close()
            if role in ("system", "developer"):
                out.append({"role": "system", "content": _text(content)})
            elif role == "user":
                out.append({"role": "user", "content": _text(content)})
        elif kind in ("function_call", "custom_tool_call"):
            msg = assistant()
            call_id = _get(item, "call_id") or _get(item, "id")
            name = _get(item, "name") or "unknown_tool"
            args = (
                _get(item, "arguments")
                if kind == "function_call"
                else _custom_input(_get(item, "input"))
            )
            msg.setdefault("tool_calls", []).append(
                {"id": call_id, "name": name, "arguments": args}
            )
            if call_id:
                tool_names[str(call_id)] = name
        elif kind == "reasoning":
            text = _reasoning_text(item)
            if text:
                assistant()
                reasoning.append(text)
        elif kind in ("function_call_output", "custom_tool_call_output"):
            close()
            call_id = _get(item, "call_id")
            out.append(
                {
                    "role": "tool",
                    "content": _text(_get(item, "output")),
                    "tool_call_id": call_id,
                    "name": tool_names.get(call_id) if call_id else None,
                }
            )
        # built-in tool items (web_search_call, ...) and item references are skipped
    close()
    # a reasoning item with nothing after it is not a message of its own
    return [
        m
        for m in out
        if m.get("role") != "assistant"
        or m.get("content") is not None
        or m.get("tool_calls")
        or m.get("refusal")
    ]


def _responses_inputs(
    instructions: str | None, items: Sequence[Any], prefix: str | None
) -> list[ChatMessage]:
    msgs = _items_to_messages(items)
    if prefix is not None:
        # server-side state (previous_response_id / conversation): the input holds only
        # the new items, so positions repeat every turn; native ids keep them apart
        for i, m in enumerate(msgs):
            m["id"] = f"{prefix}:in:{i}"
    if instructions:
        msgs.insert(0, {"role": "system", "content": instructions})
    return msgs


def _merge_reply(msgs: list[ChatMessage], response_id: str | None) -> ChatMessage | None:
    replies = [m for m in msgs if m.get("role") == "assistant"]
    if not replies:
        return None
    reply = replies[-1] if len(replies) == 1 else _merge_all(replies)
    if response_id:
        reply["id"] = f"{response_id}:out"
    return reply


def _merge_all(replies: list[ChatMessage]) -> ChatMessage:
    merged: ChatMessage = {"role": "assistant", "content": None}
    texts = [m["content"] for m in replies if m.get("content")]
    if texts:
        merged["content"] = "\n\n".join(t for t in texts if t)
    calls = [c for m in replies for c in m.get("tool_calls") or ()]
    if calls:
        merged["tool_calls"] = calls
    for name in ("refusal", "reasoning"):
        parts = [m.get(name) for m in replies if m.get(name)]
        if parts:
            merged[name] = "\n\n".join(str(p) for p in parts)
    return merged


def _responses_reply(response: Any, response_id: str | None) -> ChatMessage | None:
    return _merge_reply(_items_to_messages(getattr(response, "output", None) or ()), response_id)


def _responses_partial_reply(events: Sequence[Any], response_id: str | None) -> ChatMessage | None:
    """Rebuild the output of a Responses stream that ended before ``response.completed``."""
    slots: dict[int, Any] = {}
    deltas: dict[str, list[str]] = {}
    for event in events:
        kind = getattr(event, "type", None)
        if kind in ("response.output_item.added", "response.output_item.done"):
            slots[event.output_index] = event.item
        elif kind in ("response.output_text.delta", "response.function_call_arguments.delta"):
            deltas.setdefault(event.item_id, []).append(event.delta)
    output: list[Any] = []
    for _, item in sorted(slots.items()):
        status = getattr(item, "status", None)
        kind = getattr(item, "type", None)
        if status == "completed" or kind not in ("message", "function_call"):
            output.append(item)
            continue
        got = "".join(deltas.get(getattr(item, "id", None) or "", ()))
        if kind == "message":
            output.append(
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": got}],
                }
            )
        else:
            output.append(
                {
                    "type": "function_call",
                    "call_id": getattr(item, "call_id", None),
                    "name": getattr(item, "name", None),
                    "arguments": got,
                }
            )
    return _merge_reply(_items_to_messages(output), response_id)


def _rating_target(target: Any) -> AnswerRef | None:
    """``gf.rate`` targets: a response id, or an OpenAI response object (its ``id``)."""
    if isinstance(target, str):
        return _answers.get(target)
    if type(target).__module__.startswith("openai."):
        rid = getattr(target, "id", None)
        return _answers.get(rid) if isinstance(rid, str) else None
    return None


register_target_resolver(_rating_target)

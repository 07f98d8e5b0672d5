"""Chat Completions: the request snapshot and the conversion to neutral messages.

Conversion runs on the worker thread (the recorded event holds plain references);
``content_text``, ``refusal_of`` and ``custom_input`` are shared with the Responses API.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..core.events import ChatMessage, LLMCall, ToolCallSpec
from ..kit import get_field as _get
from ..kit import is_raw, lazy_usage, snapshot
from .call import Call, remember_answer, resolve_call
from .stream import OpenAIStreamTap


def begin_chat(call: Call, kwargs: dict[str, Any]) -> None:
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
    call.conv = resolve_call(call, None, lambda: chat_opening(msgs))


def chat_inputs_fn(call: Call) -> Callable[[], list[ChatMessage]]:
    """The request's messages, converted later on the worker."""
    return functools.partial(_chat_inputs, call.inputs)


def record_chat(call: Call, completion: Any) -> None:
    choices = getattr(completion, "choices", None) or ()
    first = choices[0] if choices else None
    props = call.properties(getattr(completion, "id", None))
    if len(choices) > 1:
        props["choices"] = len(choices)
    call.gfc.record(
        LLMCall(
            call.conv,
            call.key,
            messages=chat_inputs_fn(call),
            reply=functools.partial(_chat_reply, first),
            model=getattr(completion, "model", None) or call.model,
            usage=lazy_usage(getattr(completion, "usage", None)),
            provider=call.cfg.provider,
            finish_reason=getattr(first, "finish_reason", None),
            started_at=call.started,
            properties=props,
        )
    )
    remember_answer(getattr(completion, "id", None), call)


# -- conversion to neutral messages (worker thread) ----------------------------------


_PART_PLACEHOLDERS = {
    "image_url": "[image]",
    "input_image": "[image]",
    "input_audio": "[audio]",
    "file": "[file]",
    "input_file": "[file]",
}


def content_text(content: Any) -> str | None:
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


def refusal_of(content: Any) -> str | None:
    if isinstance(content, (list, tuple)):
        texts = [_get(p, "refusal") for p in content if _get(p, "type") == "refusal"]
        found = [t for t in texts if isinstance(t, str) and t]
        return "\n".join(found) or None
    return None


def _opening_text(content: Any) -> str:
    return content_text(content) or ""


def chat_opening(msgs: Sequence[Any]) -> tuple[str, str]:
    """(system prompt, first user message) for a derived conversation id."""
    system: list[str] = []
    for m in msgs:
        role = _get(m, "role")
        if role == "user":
            return "\n\n".join(system), _opening_text(_get(m, "content"))
        if role in ("system", "developer"):
            system.append(_opening_text(_get(m, "content")))
    return "\n\n".join(system), ""


def custom_input(text: Any) -> Any:
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
                    "arguments": custom_input(_get(custom, "input")),
                }
            )
    return calls


def _reasoning_extra(msg: Any, is_mapping: bool | None = None) -> str | None:
    """Reasoning text some OpenAI-compatible servers add (DeepSeek, vLLM, OpenRouter)."""
    if is_mapping is None:
        is_mapping = isinstance(msg, Mapping)
    # pydantic models keep unknown fields in model_extra; asking getattr for a missing
    # name goes through pydantic's slow __getattr__ miss path
    source = msg if is_mapping else getattr(msg, "model_extra", None)
    if not source:
        return None
    for name in ("reasoning_content", "reasoning"):
        value = source.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _attribute(obj: Any, name: str) -> Any:
    return getattr(obj, name, None)


def _chat_message(m: Any, tool_names: dict[str, str]) -> ChatMessage | None:
    # what get_field does, decided once per message instead of once per field
    is_mapping = isinstance(m, Mapping)
    get: Callable[[str], Any] = m.get if is_mapping else functools.partial(_attribute, m)
    role = get("role")
    content = get("content")
    if role in ("system", "developer"):
        return {"role": "system", "content": content_text(content)}
    if role == "user":
        return {"role": "user", "content": content_text(content)}
    if role == "assistant":
        msg: ChatMessage = {"role": "assistant", "content": content_text(content)}
        calls = _chat_tool_calls(get("tool_calls"))
        legacy = get("function_call")
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
        refusal = get("refusal") or refusal_of(content)
        if refusal:
            msg["refusal"] = refusal
        if msg["content"] is None:
            audio = get("audio")
            transcript = _get(audio, "transcript") if audio is not None else None
            if isinstance(transcript, str):
                msg["content"] = transcript
        reasoning = _reasoning_extra(m, is_mapping)
        if reasoning:
            msg["reasoning"] = reasoning
        return msg
    if role in ("tool", "function"):
        call_id = get("tool_call_id")
        name = get("name") or (tool_names.get(call_id) if call_id else None)
        return {
            "role": "tool",
            "content": content_text(content),
            "tool_call_id": call_id,
            "name": name,
        }
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


def chat_stream_reply(chunks: Sequence[Any]) -> ChatMessage | None:
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


def record_chat_stream(tap: OpenAIStreamTap, how: str, error: BaseException | None) -> None:
    """A chat stream that ended: its reply rebuilt from the chunks that arrived."""
    call, items = tap.call, tap.items
    first = items[0] if items else None
    usage = tap.usage
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
            messages=chat_inputs_fn(call),
            reply=functools.partial(chat_stream_reply, items),
            model=getattr(first, "model", None) or call.model,
            usage=lazy_usage(usage),
            provider=call.cfg.provider,
            finish_reason=finish_reason,
            started_at=call.started,
            error=error,
            partial=not complete,
            properties=tap.stream_props(how, getattr(first, "id", None)),
        )
    )
    remember_answer(getattr(first, "id", None), call)

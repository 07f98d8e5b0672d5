"""The OpenAI chat format, read as neutral messages: the ``messages`` of a Chat Completions
request and its reply, as dicts or SDK models. ``wrap_openai`` reads it, and so do the
OpenAI-compatible surfaces that hand it over (``gf-integrations upload``'s JSONL lines).
Nothing here imports the OpenAI SDK."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..core.events import ChatMessage, ToolCallSpec
from .fields import get_field as _get

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
    """The refusal parts of a message's content, as text."""
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


def chat_tool_calls(raw: Any) -> list[ToolCallSpec]:
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


def reasoning_extra(msg: Any, is_mapping: bool | None = None) -> str | None:
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


def chat_message(m: Any, tool_names: dict[str, str]) -> ChatMessage | None:
    """One chat-format message as a neutral one (None for an unknown role); ``tool_names``
    collects the names of the tool calls seen, for the tool messages that follow."""
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
        calls = chat_tool_calls(get("tool_calls"))
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
        reasoning = reasoning_extra(m, is_mapping)
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


def chat_messages(msgs: Sequence[Any]) -> list[ChatMessage]:
    """OpenAI chat-format messages (dicts or SDK models) as neutral messages; a message
    of a role the format does not have is left out."""
    tool_names: dict[str, str] = {}
    out: list[ChatMessage] = []
    for m in msgs:
        converted = chat_message(m, tool_names)
        if converted is not None:
            out.append(converted)
    return out

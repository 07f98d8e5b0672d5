"""Messages API requests and replies as neutral messages (converted on the worker), and
the recording of a complete ``Message``."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from ..core.events import ChatMessage, LLMCall, ToolCallSpec
from ..kit import (
    get_field,
    lazy_usage,
)
from .call import Call

TOOL_USE = frozenset(("tool_use", "server_tool_use", "mcp_tool_use"))


_PLACEHOLDERS = {
    "image": "[image]",
    "document": "[document]",
    "search_result": "[search result]",
    "container_upload": "[file]",
}


REDACTED_THINKING = "[redacted thinking]"


def record_message(call: Call, message: Any) -> None:
    stop = getattr(message, "stop_reason", None)
    call.gfc.record(
        LLMCall(
            call.conv,
            call.key,
            messages=functools.partial(inputs, call.system, call.inputs),
            reply=functools.partial(assistant_reply, getattr(message, "content", None), None),
            model=getattr(message, "model", None) or call.model,
            usage=lazy_usage(getattr(message, "usage", None)),
            usage_kind="anthropic",
            provider=call.cfg.provider,
            finish_reason=stop if isinstance(stop, str) else None,
            started_at=call.started,
            properties=call.properties(getattr(message, "id", None)),
        )
    )


def block_text(content: Any, sep: str = "\n") -> str | None:
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
    return block_text(system, "\n\n") or ""


def opening(system: Any, msgs: Sequence[Any]) -> tuple[str, str]:
    """(system prompt, first user message) for a derived conversation id."""
    for m in msgs:
        if get_field(m, "role") == "user":
            return _system_text(system), block_text(get_field(m, "content")) or ""
    return _system_text(system), ""


def assistant_reply(content: Any, tool_names: dict[str, str] | None) -> ChatMessage:
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
        elif kind in TOOL_USE:
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
                "content": block_text(get_field(block, "content")),
                "tool_call_id": call_id,
                "name": tool_names.get(call_id) if isinstance(call_id, str) else None,
                "status": "error" if get_field(block, "is_error") else None,
            }
        )
    if rest:
        out.append({"role": "user", "content": block_text(rest)})


def inputs(system: Any, msgs: Sequence[Any]) -> list[ChatMessage]:
    out: list[ChatMessage] = []
    text = _system_text(system)
    if text:
        out.append({"role": "system", "content": text})
    tool_names: dict[str, str] = {}
    for m in msgs:
        role = get_field(m, "role")
        if role == "assistant":
            out.append(assistant_reply(get_field(m, "content"), tool_names))
        elif role == "user":
            _user(get_field(m, "content"), tool_names, out)
    return out

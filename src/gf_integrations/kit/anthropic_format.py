"""The Anthropic Messages format, read as neutral messages: a request's ``system`` and
``messages`` and a reply's content blocks, as dicts or SDK models, and a reply rebuilt from
its stream events. ``wrap_anthropic`` reads it, and so does ``wrap_bedrock`` for Claude
bodies sent through ``invoke_model``. Nothing here imports the Anthropic SDK."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..core.events import ChatMessage, ToolCallSpec
from .fields import get_field

TOOL_USE = frozenset(("tool_use", "server_tool_use", "mcp_tool_use"))


_PLACEHOLDERS = {
    "image": "[image]",
    "document": "[document]",
    "search_result": "[search result]",
    "container_upload": "[file]",
}


REDACTED_THINKING = "[redacted thinking]"


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


def system_text(system: Any) -> str:
    return block_text(system, "\n\n") or ""


def opening(system: Any, msgs: Sequence[Any]) -> tuple[str, str]:
    """(system prompt, first user message) for a derived conversation id."""
    for m in msgs:
        if get_field(m, "role") == "user":
            return system_text(system), block_text(get_field(m, "content")) or ""
    return system_text(system), ""


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
    text = system_text(system)
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


def stream_reply(events: Sequence[Any]) -> ChatMessage:
    """The reply rebuilt from the content block events that arrived (all, or up to a cut);
    the events are SDK models or the wire's dicts."""
    slots: dict[Any, tuple[Any, list[str]]] = {}
    for event in events:
        kind = get_field(event, "type")
        index = get_field(event, "index")
        if kind == "content_block_start":
            slots[index] = (get_field(event, "content_block"), [])
        elif kind == "content_block_delta" and index in slots:
            d = get_field(event, "delta")
            piece = get_field(d, "text") or get_field(d, "partial_json")
            piece = piece or get_field(d, "thinking")
            if isinstance(piece, str):
                slots[index][1].append(piece)
    content: list[Any] = []
    for _, (block, pieces) in sorted(slots.items(), key=lambda kv: _order(kv[0])):
        kind = get_field(block, "type")
        got = "".join(pieces)
        if kind == "text":
            content.append({"type": "text", "text": got or get_field(block, "text") or ""})
        elif kind == "thinking":
            content.append({"type": "thinking", "thinking": got})
        elif kind in TOOL_USE:
            # the JSON text as streamed: the recorder parses it (or keeps a cut one raw)
            args = got if got else get_field(block, "input")
            content.append(
                {
                    "type": kind,
                    "id": get_field(block, "id"),
                    "name": get_field(block, "name"),
                    "input": args,
                }
            )
        else:
            content.append(block)
    return assistant_reply(content, None)


def _order(index: Any) -> int:
    return index if isinstance(index, int) else 0

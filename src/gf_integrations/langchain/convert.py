"""LangChain messages and documents -> neutral dicts (run on the worker thread).

Each field is read on its own: a framework object that surprises a converter (a property
that raises, a provider's odd ``tool_calls`` entry) loses that one field
(:func:`~gf_integrations.kit.read_field`), and the rest is still recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..core.events import ChatMessage, Document, ToolCallSpec
from ..kit import read_field

_ROLES = {
    "human": "user",
    "ai": "assistant",
    "system": "system",
    "developer": "system",
    "tool": "tool",
    "function": "tool",
    "AIMessageChunk": "assistant",
    "HumanMessageChunk": "user",
    "SystemMessageChunk": "system",
    "ToolMessageChunk": "tool",
}


def _field(read: Callable[[], Any], default: Any, what: str) -> Any:
    return read_field(read, default, framework="LangChain", what=what)


def text(content: Any) -> str:
    """A message's content (a string or a list of content blocks) as plain text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, Mapping) and block.get("type") in (None, "text"):
                parts.append(str(block.get("text") or ""))
        return "".join(parts)
    return "" if content is None else str(content)


def _spec(tc: Mapping[str, Any]) -> ToolCallSpec:
    return {"id": tc.get("id"), "name": tc.get("name") or "", "arguments": tc.get("args")}


def _tool_calls(msg: Any) -> list[ToolCallSpec]:
    calls = [_spec(tc) for tc in getattr(msg, "tool_calls", None) or ()]
    calls.extend(_spec(tc) for tc in getattr(msg, "invalid_tool_calls", None) or ())
    if not calls:
        # providers that only fill additional_kwargs (OpenAI raw format)
        extra = getattr(msg, "additional_kwargs", None) or {}
        for tc in extra.get("tool_calls") or ():
            fn = tc.get("function") or {}
            calls.append(
                {"id": tc.get("id"), "name": fn.get("name") or "", "arguments": fn.get("arguments")}
            )
    return calls


def _role(msg: Any) -> str:
    role = _ROLES.get(getattr(msg, "type", None) or "")
    if role is None:
        # ChatMessage(role=...) and unknown types
        raw = str(getattr(msg, "role", None) or "user")
        role = _ROLES.get(raw, raw)
        if role not in ("assistant", "user", "system", "tool"):
            role = "user"
    return role


def _extra_text(msg: Any, key: str) -> str | None:
    value = (getattr(msg, "additional_kwargs", None) or {}).get(key)
    return value if isinstance(value, str) and value else None


def _unguarded(read: Callable[[], Any], default: Any, what: str) -> Any:
    return read()


def to_chat(msg: Any) -> ChatMessage:
    """One LangChain message as a neutral :class:`ChatMessage`."""
    try:
        return _to_chat(msg, _unguarded)  # the usual case: no field surprises us
    except Exception:
        return _to_chat(msg, _field)  # read again, each field guarded on its own


def _to_chat(msg: Any, field: Callable[[Callable[[], Any], Any, str], Any]) -> ChatMessage:
    # field(read, default, what): read() plainly, or guarded by read_field
    role: str = field(lambda: _role(msg), "user", "message role")
    out: ChatMessage = {
        "role": role,
        "content": field(lambda: text(getattr(msg, "content", None)), "", "message content"),
        "id": field(lambda: getattr(msg, "id", None), None, "message id"),
    }
    if role == "assistant":
        calls: list[ToolCallSpec] = field(lambda: _tool_calls(msg), [], "tool calls")
        if calls:
            out["tool_calls"] = calls
        reasoning = field(lambda: _extra_text(msg, "reasoning_content"), None, "reasoning")
        if reasoning:
            out["reasoning"] = reasoning
        refusal = field(lambda: _extra_text(msg, "refusal"), None, "refusal")
        if refusal:
            out["refusal"] = refusal
    elif role == "tool":
        out["tool_call_id"] = field(lambda: getattr(msg, "tool_call_id", None), None, "call id")
        out["name"] = field(lambda: getattr(msg, "name", None), None, "tool name")
        if field(lambda: getattr(msg, "status", None), None, "tool status") == "error":
            out["status"] = "error"
    return out


def to_chats(messages: Sequence[Any]) -> list[ChatMessage]:
    """LangChain messages as neutral ones, in order."""
    return [to_chat(m) for m in messages]


def prompts_to_chats(prompts: Sequence[str]) -> list[ChatMessage]:
    """A completion LLM's prompts: the first one is the user's message."""
    return [{"role": "user", "content": p} for p in prompts[:1]]


def _score(md: Mapping[str, Any]) -> float | None:
    for key in ("score", "relevance_score", "similarity_score", "_score"):
        value = md.get(key)
        if isinstance(value, (int, float)):
            return float(value)
    return None


def _doc_id(d: Any, md: Mapping[str, Any]) -> str | None:
    doc_id = getattr(d, "id", None) or md.get("id") or md.get("doc_id") or md.get("source")
    return None if doc_id is None else str(doc_id)


def _document(d: Any) -> Document:
    md = _field(lambda: getattr(d, "metadata", None) or {}, {}, "document metadata")
    if not isinstance(md, Mapping):
        md = {}
    return {
        "id": _field(lambda: _doc_id(d, md), None, "document id"),
        "text": _field(lambda: getattr(d, "page_content", None), None, "document text"),
        "metadata": md,
        "score": _field(lambda: _score(md), None, "document score"),
    }


def to_documents(documents: Sequence[Any]) -> list[Document]:
    """Retrieved LangChain documents as neutral ones."""
    return [_document(d) for d in documents]

"""Converters from LlamaIndex objects to neutral events.

They run on the worker via Lazy callables unless noted.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from ..core.events import (
    ChatMessage,
    Document,
    ToolCallSpec,
)
from ..kit import read_field

T = TypeVar("T")


def _field(what: str, read: Callable[[], T], default: T) -> T:
    """One field read from a LlamaIndex object: a surprise loses this field, not the event."""
    return read_field(read, default, framework="a LlamaIndex object", what=what)


def _method(span_id: str) -> tuple[str, str]:
    """``"Class.method-uuid"`` -> ``("Class", "method")``."""
    # the suffix is "-" + a 36-character uuid4
    head = span_id[:-37] if len(span_id) > 37 and span_id[-37] == "-" else span_id
    cls, _, meth = head.rpartition(".")
    return cls, meth


def _role(msg: Any) -> str:
    role = getattr(msg, "role", "user")
    return str(getattr(role, "value", role))


def _blocks_text(msg: Any) -> tuple[str | None, list[ToolCallSpec], str | None]:
    """Text, tool calls and reasoning of a LlamaIndex ChatMessage.

    A block, tool call or attribute that cannot be read is left out, the rest is kept.
    """
    texts: list[str] = []
    calls: list[ToolCallSpec] = []
    thinking: list[str] = []
    no_blocks: list[Any] = []
    blocks = _field("a message's blocks", functools.partial(_blocks, msg), no_blocks)
    for b in blocks:
        unread: tuple[str, Any] = ("", None)
        kind, value = _field("a message block", functools.partial(_block, b), unread)
        if kind == "text":
            texts.append(value)
        elif kind == "tool_call":
            calls.append(value)
        elif kind == "thinking" and value:
            thinking.append(value)
    no_extra: Mapping[str, Any] = {}
    extra = _field("a message's additional_kwargs", functools.partial(_extra, msg), no_extra)
    if not calls and extra.get("tool_calls"):
        for raw in extra["tool_calls"] or ():
            call = _field("a tool call", functools.partial(_openai_style_call, raw), None)
            if call is not None:
                calls.append(call)
    if not blocks:
        content = _field("a message's content", lambda: getattr(msg, "content", None), None)
        text: str | None = None if content is None else str(content)
    else:
        text = "".join(texts) if texts else None
    return text, calls, ("\n".join(thinking) or None)


def _blocks(msg: Any) -> list[Any]:
    return list(getattr(msg, "blocks", None) or ())


def _block(b: Any) -> tuple[str, Any]:
    """``(kind, value)`` of one content block: text, a tool call or thinking text."""
    kind = getattr(b, "block_type", None)
    if kind == "text":
        return kind, str(getattr(b, "text", "") or "")
    if kind == "tool_call":
        call: ToolCallSpec = {
            "id": getattr(b, "tool_call_id", None),
            "name": str(getattr(b, "tool_name", "") or "unknown_tool"),
            "arguments": getattr(b, "tool_kwargs", None),
        }
        return kind, call
    if kind == "thinking":
        content = getattr(b, "content", None)
        return kind, str(content) if content else None
    return "", None


def _extra(msg: Any) -> Mapping[str, Any]:
    extra = getattr(msg, "additional_kwargs", None) or {}
    return extra if isinstance(extra, Mapping) else {}


def _openai_style_call(raw: Any) -> ToolCallSpec:
    get = raw.get if isinstance(raw, Mapping) else (lambda k, d=None: getattr(raw, k, d))
    fn = get("function") or {}
    fget = fn.get if isinstance(fn, Mapping) else (lambda k, d=None: getattr(fn, k, d))
    return {
        "id": get("id") or get("tool_id"),
        "name": str(fget("name") or get("tool_name") or "unknown_tool"),
        "arguments": fget("arguments") if fn else get("tool_kwargs"),
    }


def _to_neutral(msg: Any) -> ChatMessage:
    role = _field("a message's role", functools.partial(_role, msg), "user")
    text, calls, reasoning = _blocks_text(msg)
    out: ChatMessage = {"role": role, "content": text}
    if calls:
        out["tool_calls"] = calls
    if reasoning:
        out["reasoning"] = reasoning
    if role == "tool":
        no_extra: Mapping[str, Any] = {}
        extra = _field("a message's additional_kwargs", functools.partial(_extra, msg), no_extra)
        out["tool_call_id"] = extra.get("tool_call_id") or extra.get("tool_id")
        out["name"] = extra.get("name") or extra.get("tool_name")
        if extra.get("is_error"):
            out["status"] = "error"
    elif role in ("developer",):
        out["role"] = "system"
    return out


def _convert_messages(msgs: Sequence[Any]) -> list[ChatMessage]:
    return [_to_neutral(m) for m in msgs]


def _query_text(q: Any) -> str:
    if isinstance(q, str):
        return q
    text = getattr(q, "query_str", None)
    return str(text) if text is not None else str(q)


def _documents(nodes: Sequence[Any]) -> list[Document]:
    """Retrieved nodes as documents; a node attribute that cannot be read is left out."""
    docs: list[Document] = []
    for nws in nodes:
        node = getattr(nws, "node", nws)
        docs.append(
            {
                "id": _field("a node's id", functools.partial(_node_id, node), None),
                "text": _field("a node's text", functools.partial(_node_text, node), ""),
                "metadata": _field("a node's metadata", functools.partial(_node_meta, node), None),
                "score": _field("a node's score", functools.partial(_score, nws), None),
            }
        )
    return docs


def _score(node_with_score: Any) -> Any:
    return getattr(node_with_score, "score", None)


def _node_id(node: Any) -> Any:
    return getattr(node, "node_id", None) or getattr(node, "id_", None)


def _node_text(node: Any) -> str:
    try:
        return str(node.get_content())
    except Exception:
        return str(getattr(node, "text", "") or "")


def _node_meta(node: Any) -> dict[str, Any] | None:
    meta = getattr(node, "metadata", None)
    return dict(meta) if isinstance(meta, Mapping) and meta else None


def _raw_of(response: Any) -> Any:
    """The provider's response object behind a ChatResponse/CompletionResponse.

    A streamed OpenAI Responses call (``OpenAIResponses``) ends on a ``response.completed``
    event whose ``response`` holds the model, usage and status.
    """
    raw = getattr(response, "raw", None)
    if raw is not None and not isinstance(raw, Mapping) and getattr(raw, "model", None) is None:
        inner = getattr(raw, "response", None)
        if inner is not None and getattr(inner, "model", None) is not None:
            return inner
    return raw


def _usage_of(response: Any) -> dict[str, Any] | None:
    """Token usage from a ChatResponse/CompletionResponse (host thread: attribute reads)."""
    raw = _raw_of(response)
    usage: Any = None
    if isinstance(raw, Mapping):
        usage = raw.get("usage") or raw.get("usage_metadata")
    elif raw is not None:
        usage = getattr(raw, "usage", None) or getattr(raw, "usage_metadata", None)
    if usage is not None and not isinstance(usage, Mapping):
        dump = getattr(usage, "model_dump", None) or getattr(usage, "dict", None)
        try:
            # exclude_none: the same usage object recorded by wrap_openai looks the same
            usage = dump(exclude_none=True) if dump else dict(vars(usage))
        except Exception:
            usage = None
    if isinstance(usage, Mapping) and usage:
        return dict(usage)
    extra = getattr(response, "additional_kwargs", None)
    if isinstance(extra, Mapping) and (
        "prompt_tokens" in extra or "completion_tokens" in extra or "total_tokens" in extra
    ):
        return {
            k: extra[k]
            for k in ("prompt_tokens", "completion_tokens", "total_tokens")
            if k in extra
        }
    return None


def _raw_model(response: Any) -> str | None:
    raw = _raw_of(response)
    model = raw.get("model") if isinstance(raw, Mapping) else getattr(raw, "model", None)
    return model if isinstance(model, str) and model else None


def _finish_reason(response: Any) -> str | None:
    raw = _raw_of(response)
    choices = raw.get("choices") if isinstance(raw, Mapping) else getattr(raw, "choices", None)
    if isinstance(choices, (list, tuple)) and choices:
        c = choices[0]
        fr = c.get("finish_reason") if isinstance(c, Mapping) else getattr(c, "finish_reason", None)
        return fr if isinstance(fr, str) else None
    if raw is not None and not isinstance(raw, Mapping):
        # a Responses API response: why it is incomplete, else its status (as wrap_openai)
        reason = getattr(getattr(raw, "incomplete_details", None), "reason", None)
        reason = reason or getattr(raw, "status", None)
        return reason if isinstance(reason, str) else None
    return None


_UNKNOWN_MODELS = frozenset({"", "unknown", "none", "default"})


def _model_name(model_dict: Any, instance: Any = None) -> str | None:
    if isinstance(model_dict, Mapping):
        name = model_dict.get("model_name") or model_dict.get("model")
        if isinstance(name, str) and name.strip().lower() not in _UNKNOWN_MODELS:
            return name
        cls = model_dict.get("class_name")
        if isinstance(cls, str) and cls:
            return cls
    if instance is not None:
        return type(instance).__name__
    return None


def _react_thought(text: str | None) -> str | None:
    """The ``Thought:`` part of a ReAct step, without the Action/Answer lines."""
    if not text or "Thought:" not in text:
        return None  # a reply without the format is taken as the answer: no thought in it
    body = text.split("Thought:", 1)[-1]
    for marker in ("\nAction:", "\nAnswer:"):
        body = body.split(marker, 1)[0]
    return body.strip() or None


def _agent_answer(result: Any) -> str | None:
    """The answer text of a workflow agent's StopEvent / AgentOutput."""
    out = getattr(result, "result", result)
    response = out.get("response") if isinstance(out, Mapping) else getattr(out, "response", None)
    if isinstance(response, Mapping):
        texts = [b.get("text") for b in response.get("blocks") or () if isinstance(b, Mapping)]
        joined = "".join(t for t in texts if isinstance(t, str))
        return joined or (
            response.get("content") if isinstance(response.get("content"), str) else None
        )
    if response is not None:
        return _blocks_text(response)[0]
    return None


def _content(out: Any) -> Any:
    try:
        content = out.content
    except Exception:
        content = None
    if content is None:
        content = getattr(out, "raw_output", None)
    return content


def _tag(tags: Mapping[str, Any] | None, key: str) -> str | None:
    if not tags:
        return None
    v = tags.get(key)
    return str(v) if v else None


def _mro_names(instance: Any) -> set[str]:
    return {c.__name__ for c in type(instance).__mro__} if instance is not None else set()


def _is_agent(instance: Any) -> bool:
    names = _mro_names(instance)
    return bool(names & {"BaseWorkflowAgent", "AgentWorkflow", "BaseAgent", "AgentRunner"})


def _is_chat_engine(instance: Any) -> bool:
    return "BaseChatEngine" in _mro_names(instance)

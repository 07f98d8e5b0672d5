"""The Converse format as neutral messages: ``converse`` / ``converse_stream`` requests,
replies and stream events, and the Amazon Nova ``invoke_model`` bodies that share it.

Content blocks are unions with one key each (``text``, ``toolUse``, ``toolResult``,
``reasoningContent``, ``image``, ...). Everything here runs on the worker.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..core.events import ChatMessage, LLMCall, ToolCallSpec
from ..kit import record_failure, snapshot
from .call import Call, remember_answer, request_id
from .stream import BedrockStreamTap

_PLACEHOLDERS = {
    "image": "[image]",
    "document": "[document]",
    "video": "[video]",
    "audio": "[audio]",
}
_SKIPPED = frozenset(("cachePoint",))
REDACTED_REASONING = "[redacted reasoning]"


def _kind(block: Any) -> str | None:
    """A content block's member name (the union's one key), or None."""
    if not isinstance(block, Mapping) or not block:
        return None
    return str(next(iter(block)))


def _unknown(block: Any, kind: str | None) -> str:
    # a block this reader does not know: kept visible, never guessed at; a block the
    # installed botocore does not know arrives as {"SDK_UNKNOWN_MEMBER": {"name": ...}}
    if kind == "SDK_UNKNOWN_MEMBER" and isinstance(block[kind], Mapping):
        kind = str(block[kind].get("name") or kind)
    return f"[unsupported content block: {kind or 'not a block'}]"


def content_text(blocks: Any, sep: str = "\n") -> str | None:
    """User, system or tool-result content as text; media become placeholders."""
    if blocks is None or isinstance(blocks, str):
        return blocks
    parts: list[str] = []
    for block in blocks if isinstance(blocks, (list, tuple)) else ():
        kind = _kind(block)
        if kind == "text":
            parts.append(str(block["text"]))
        elif kind == "json":
            parts.append(json.dumps(block["json"], ensure_ascii=False, default=str))
        elif kind == "guardContent":
            text = block["guardContent"].get("text") if isinstance(block, Mapping) else None
            parts.append(str(text.get("text", "")) if isinstance(text, Mapping) else "")
        elif kind in _PLACEHOLDERS:
            parts.append(_PLACEHOLDERS[kind])
        elif kind in _SKIPPED:
            continue
        else:
            parts.append(_unknown(block, kind))
    return sep.join(parts)


def system_text(system: Any) -> str:
    return content_text(system, "\n\n") or ""


def opening(system: Any, messages: Sequence[Any]) -> tuple[str, str]:
    """(system prompt, first user message) for a derived conversation id."""
    for m in messages:
        if isinstance(m, Mapping) and m.get("role") == "user":
            return system_text(system), _user_text(m.get("content"))
    return system_text(system), ""


def _user_text(content: Any) -> str:
    if not isinstance(content, (list, tuple)):
        return content_text(content) or ""
    return content_text([b for b in content if _kind(b) != "toolResult"]) or ""


def assistant_turn(content: Any, tool_names: dict[str, str] | None) -> ChatMessage:
    """An assistant message's content blocks (a reply, or history) as one neutral message:
    text beside ``toolUse`` blocks becomes the recorder's ``thought``."""
    if content is None or isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[ToolCallSpec] = []
    for block in content if isinstance(content, (list, tuple)) else ():
        kind = _kind(block)
        if kind == "text":
            texts.append(str(block["text"]))
        elif kind == "toolUse":
            use = block["toolUse"] if isinstance(block["toolUse"], Mapping) else {}
            name = use.get("name") or "unknown_tool"
            call_id = use.get("toolUseId")
            calls.append({"id": call_id, "name": name, "arguments": use.get("input")})
            if tool_names is not None and isinstance(call_id, str):
                tool_names[call_id] = name
        elif kind == "reasoningContent":
            thoughts.append(_reasoning(block["reasoningContent"]))
        elif kind in _SKIPPED:
            continue
        elif kind in _PLACEHOLDERS:
            texts.append(_PLACEHOLDERS[kind])
        else:
            texts.append(_unknown(block, kind))
    msg: ChatMessage = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        msg["tool_calls"] = calls
    if any(thoughts):
        msg["reasoning"] = "\n\n".join(t for t in thoughts if t)
    return msg


def _reasoning(value: Any) -> str:
    if not isinstance(value, Mapping):
        return ""
    text = value.get("reasoningText")
    if isinstance(text, Mapping):
        return str(text.get("text") or "")
    if "redactedContent" in value:
        return REDACTED_REASONING  # encrypted: only the fact that it happened
    return ""


def _user_turn(content: Any, tool_names: dict[str, str], out: list[ChatMessage]) -> None:
    """A user message: its ``toolResult`` blocks become tool messages, the rest the user's."""
    if not isinstance(content, (list, tuple)):
        out.append({"role": "user", "content": content_text(content)})
        return
    rest: list[Any] = []
    for block in content:
        if _kind(block) != "toolResult":
            rest.append(block)
            continue
        result = block["toolResult"] if isinstance(block["toolResult"], Mapping) else {}
        call_id = result.get("toolUseId")
        out.append(
            {
                "role": "tool",
                "content": content_text(result.get("content")),
                "tool_call_id": call_id,
                "name": tool_names.get(call_id) if isinstance(call_id, str) else None,
                "status": "error" if result.get("status") == "error" else None,
            }
        )
    if rest:
        out.append({"role": "user", "content": content_text(rest)})


def inputs(system: Any, messages: Sequence[Any]) -> list[ChatMessage]:
    """A Converse request's ``system`` and ``messages`` as neutral messages."""
    out: list[ChatMessage] = []
    text = system_text(system)
    if text:
        out.append({"role": "system", "content": text})
    tool_names: dict[str, str] = {}
    for m in messages:
        if not isinstance(m, Mapping):
            continue
        role = m.get("role")
        if role == "assistant":
            out.append(assistant_turn(m.get("content"), tool_names))
        elif role == "user":
            _user_turn(m.get("content"), tool_names, out)
    return out


def output_reply(output: Any) -> ChatMessage | None:
    """A Converse (or Nova) response's ``output.message`` as the reply."""
    message = output.get("message") if isinstance(output, Mapping) else None
    if not isinstance(message, Mapping):
        return None
    return assistant_turn(message.get("content"), None)


# -- streams ------------------------------------------------------------------------------


def stream_reply(events: Sequence[Any]) -> ChatMessage:
    """The reply rebuilt from the content block events that arrived (all, or up to a cut).

    Text blocks have no ``contentBlockStart``: a delta opens its block. A tool use's input
    arrives as JSON text in pieces, kept as text (the recorder parses it, or keeps a cut
    one as it is).
    """
    slots: dict[int, tuple[str, dict[str, Any], list[str]]] = {}
    for event in events:
        if not isinstance(event, Mapping):
            continue
        start = event.get("contentBlockStart")
        delta_event = event.get("contentBlockDelta")
        if isinstance(start, Mapping):
            use = start.get("start", {}).get("toolUse")
            if isinstance(use, Mapping):
                slots[_index(start)] = ("toolUse", dict(use), [])
        elif isinstance(delta_event, Mapping):
            delta = delta_event.get("delta")
            if not isinstance(delta, Mapping):
                continue
            index = _index(delta_event)
            if "text" in delta:
                slots.setdefault(index, ("text", {}, []))[2].append(str(delta["text"]))
            elif isinstance(delta.get("toolUse"), Mapping):
                piece = delta["toolUse"].get("input")
                slot = slots.setdefault(index, ("toolUse", {}, []))
                if isinstance(piece, str):
                    slot[2].append(piece)
            elif isinstance(delta.get("reasoningContent"), Mapping):
                reasoning = delta["reasoningContent"]
                slot = slots.setdefault(index, ("reasoningContent", {}, []))
                if isinstance(reasoning.get("text"), str):
                    slot[2].append(reasoning["text"])
                elif "redactedContent" in reasoning:
                    slot[1]["redacted"] = True
    content: list[Any] = []
    for _, (kind, info, pieces) in sorted(slots.items()):
        got = "".join(pieces)
        if kind == "text":
            content.append({"text": got})
        elif kind == "toolUse":
            content.append({"toolUse": {**info, "input": got if got else {}}})
        elif got:
            content.append({"reasoningContent": {"reasoningText": {"text": got}}})
        elif info.get("redacted"):
            content.append({"reasoningContent": {"redactedContent": b""}})
    return assistant_turn(content, None)


def _index(event: Mapping[str, Any]) -> int:
    index = event.get("contentBlockIndex")
    return index if isinstance(index, int) else 0


def stream_end(events: Sequence[Any]) -> tuple[str | None, Any, bool]:
    """(stop reason, usage, whether ``messageStop`` arrived) of a Converse-shaped stream."""
    stop: str | None = None
    usage: Any = None
    stopped = False
    for event in events:
        if not isinstance(event, Mapping):
            continue
        if isinstance(event.get("messageStop"), Mapping):
            stopped = True
            reason = event["messageStop"].get("stopReason")
            stop = reason if isinstance(reason, str) else None
        elif isinstance(event.get("metadata"), Mapping):
            usage = event["metadata"].get("usage")
    return stop, usage, stopped


# -- recording ----------------------------------------------------------------------------


def begin_converse(call: Call, kwargs: dict[str, Any]) -> Any:
    """Snapshot a Converse request; returns the opening for a derived conversation id."""
    call.messages = msgs = snapshot(call, kwargs, "messages")
    system = kwargs.get("system")
    call.system = snapshot(call, call.kwargs, "system") if system is not None else None
    return lambda: opening(call.system, msgs)


def converse_inputs(call: Call) -> functools.partial[list[ChatMessage]]:
    return functools.partial(inputs, call.system, call.messages)


def record_converse(call: Call, response: Any) -> None:
    stop = response.get("stopReason")
    rid = request_id(response)
    call.gfc.record(
        LLMCall(
            call.conv,
            call.key,
            messages=converse_inputs(call),
            reply=functools.partial(output_reply, response.get("output")),
            model=call.model,
            usage=response.get("usage"),
            usage_kind="bedrock",
            provider=call.cfg.provider,
            finish_reason=stop if isinstance(stop, str) else None,
            started_at=call.started,
            properties=call.properties(rid),
        )
    )
    remember_answer(rid, call)


def _usage_of(events: Sequence[Any]) -> Any:
    return stream_end(events)[1]


def record_converse_stream(tap: BedrockStreamTap, how: str, error: BaseException | None) -> None:
    call, events = tap.call, tap.items
    if not events and error is not None:
        record_failure(call, error, converse_inputs(call))
        return
    stop, _, stopped = stream_end(events)
    rid = tap.rid
    call.gfc.record(
        LLMCall(
            call.conv,
            call.key,
            messages=converse_inputs(call),
            reply=functools.partial(stream_reply, events),
            model=call.model,
            usage=functools.partial(_usage_of, events),
            usage_kind="bedrock",
            provider=call.cfg.provider,
            finish_reason=stop,
            started_at=call.started,
            error=error,
            partial=not (how == "exhausted" and error is None and stopped),
            properties=tap.stream_props(how, rid),
        )
    )
    remember_answer(rid, call)

"""The Responses API: conversation chains, the request snapshot, the recorded reply.

A ``previous_response_id`` continues the conversation its response was recorded under
(a bounded LRU of response ids); output items become neutral messages on the worker.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..common.bounded import BoundedMap
from ..core.events import ChatMessage, LLMCall
from ..kit import get_field as _get
from ..kit import lazy_usage, snapshot
from ..kit.openai_format import chat_opening, content_text, custom_input, refusal_of
from .call import Call, remember_answer, resolve_call
from .stream import OpenAIStreamTap

_MAX_CHAINS = 10_000


# Responses ``response.id`` -> conversation id, for ``previous_response_id`` chains
response_chains: BoundedMap[str, str] = BoundedMap(_MAX_CHAINS, lru=True)


def begin_responses(call: Call, kwargs: dict[str, Any]) -> None:
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
            native = response_chains.get(previous) or f"openai-response-{previous}"
    elif native is not None:
        call.chained = True
    call.conv = resolve_call(call, native, lambda: _responses_opening(call.instructions, items))


def responses_inputs_fn(call: Call, response_id: str | None) -> Callable[[], list[ChatMessage]]:
    """The request's input items (after ``instructions``), converted later on the worker."""
    prefix = (response_id or call.key) if call.chained else None
    return functools.partial(_responses_inputs, call.instructions, call.inputs, prefix)


def record_response(call: Call, response: Any, extra: Mapping[str, Any] | None = None) -> None:
    rid = getattr(response, "id", None)
    rid = rid if isinstance(rid, str) else None
    conv = call.conv
    if rid:
        response_chains.put(rid, conv.external_conversation_id)
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
            messages=responses_inputs_fn(call, rid),
            reply=functools.partial(_responses_reply, response, rid if call.chained else None),
            model=getattr(response, "model", None) or call.model,
            usage=lazy_usage(getattr(response, "usage", None)),
            usage_kind="openai_responses",
            provider=call.cfg.provider,
            finish_reason=reason if isinstance(reason, str) else None,
            started_at=call.started,
            error=(getattr(error, "message", None) or str(error)) if error else None,
            properties=props,
        )
    )
    remember_answer(rid, call)


# -- conversion to neutral messages (worker thread) ----------------------------------


def _responses_opening(instructions: str | None, items: Sequence[Any]) -> tuple[str, str]:
    system, first_user = chat_opening([m for m in items if _get(m, "role") is not None])
    if instructions:
        system = f"{instructions}\n\n{system}" if system else instructions
    return system, first_user


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
                text = content_text(content)
                if text:
                    texts.append(text)
                refusal = refusal_of(content)
                if refusal:
                    msg["refusal"] = refusal
                continue
            close()
            if role in ("system", "developer"):
                out.append({"role": "system", "content": content_text(content)})
            elif role == "user":
                out.append({"role": "user", "content": content_text(content)})
        elif kind in ("function_call", "custom_tool_call"):
            msg = assistant()
            call_id = _get(item, "call_id") or _get(item, "id")
            name = _get(item, "name") or "unknown_tool"
            args = (
                _get(item, "arguments")
                if kind == "function_call"
                else custom_input(_get(item, "input"))
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
                    "content": content_text(_get(item, "output")),
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


def responses_partial_reply(events: Sequence[Any], response_id: str | None) -> ChatMessage | None:
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


def record_responses_stream(tap: OpenAIStreamTap, how: str, error: BaseException | None) -> None:
    """A Responses stream that ended: its final response, or what arrived, marked partial."""
    call, items = tap.call, tap.items
    for event in reversed(items):
        if getattr(event, "type", None) in (
            "response.completed",
            "response.incomplete",
            "response.failed",
        ):
            record_response(call, event.response, tap.stream_props(how, None))
            return
    # ended before the final event: rebuild what arrived, mark it partial
    started = next(
        (e.response for e in items if getattr(e, "type", None) == "response.created"), None
    )
    rid = getattr(started, "id", None)
    rid = rid if isinstance(rid, str) else None
    if rid:
        response_chains.put(rid, call.conv.external_conversation_id)
    if error is None:
        for event in items:
            if getattr(event, "type", None) == "error":
                error_text = getattr(event, "message", None) or "stream error"
                error = RuntimeError(str(error_text))
    call.gfc.record(
        LLMCall(
            call.conv,
            call.key,
            messages=responses_inputs_fn(call, rid),
            reply=functools.partial(responses_partial_reply, items, rid if call.chained else None),
            model=getattr(started, "model", None) or call.model,
            provider=call.cfg.provider,
            started_at=call.started,
            error=error,
            partial=True,
            properties=tap.stream_props(how, rid),
        )
    )
    remember_answer(rid, call)

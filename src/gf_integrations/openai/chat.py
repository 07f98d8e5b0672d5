"""Chat Completions: the request snapshot, the reply and the stream.

Conversion runs where mapping runs (the recorded event holds plain references); reading the
chat format itself is ``kit.openai_format``'s, shared with the Responses API and the CLI.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from ..core.events import ChatMessage, LLMCall
from ..kit import lazy_usage, snapshot
from ..kit.openai_format import (
    chat_message,
    chat_messages,
    chat_opening,
    reasoning_extra,
)
from .call import Call, remember_answer, resolve_call
from .stream import OpenAIStreamTap


def begin_chat(call: Call, kwargs: dict[str, Any]) -> None:
    msgs = snapshot(call, kwargs, "messages")
    call.inputs = msgs
    call.conv = resolve_call(call, None, lambda: chat_opening(msgs))


def chat_inputs_fn(call: Call) -> Callable[[], list[ChatMessage]]:
    """The request's messages, converted later on the worker."""
    return functools.partial(chat_messages, call.inputs)


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
            usage_kind="openai_chat",
            provider=call.cfg.provider,
            finish_reason=getattr(first, "finish_reason", None),
            started_at=call.started,
            properties=props,
        )
    )
    remember_answer(getattr(completion, "id", None), call)


def _chat_reply(choice: Any) -> ChatMessage | None:
    if choice is None:
        return None
    message = getattr(choice, "message", None)
    if message is None:
        return None
    return chat_message(message, {})


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
            extra = reasoning_extra(delta)
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
    usage = None
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
            usage_kind="openai_chat",
            provider=call.cfg.provider,
            finish_reason=finish_reason,
            started_at=call.started,
            error=error,
            partial=not complete,
            properties=tap.stream_props(how, getattr(first, "id", None)),
        )
    )
    remember_answer(getattr(first, "id", None), call)

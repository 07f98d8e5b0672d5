"""Before and after each ``generate_content`` call: snapshot the request and resolve its
conversation on the caller's thread; record the response, tap the stream or record the
error. Conversion to messages happens later, in the event's lazy callables."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from ..core.events import ChatMessage, LLMCall
from ..kit import record_failure, recorder_for, resolve_identity, snapshot
from .call import Call, Config, log_failure, remember_answer
from .contents import field, opening, request_messages


def begin(cfg: Config, api: str, kwargs: dict[str, Any]) -> Call | None:
    """Decide whether to record and snapshot what we need. None means pass through."""
    try:
        gfc = recorder_for(cfg, kwargs)
        if gfc is None:
            return None
        call = Call(cfg, gfc, api, kwargs)
        contents = kwargs.get("contents")
        # a list is copied: chats and apps append to theirs right after the call
        call.contents = (
            snapshot(call, kwargs, "contents") if isinstance(contents, list) else contents
        )
        config = kwargs.get("config")
        call.system = field(config, "system_instruction") if config is not None else None
        call.conv = resolve_identity(
            call,
            native_conversation_id=None,
            native_user_id=None,
            opening=lambda: opening(call.system, call.contents),
            prefix="gemini",
        )
        return call
    except Exception as exc:
        log_failure("before the call", exc)
        return None


def fail(call: Call, exc: BaseException) -> None:
    """The call raised (the caller gets the same exception): record the failed call."""
    record_failure(call, exc, lambda: request_messages(call.system, call.contents)[0])


class Conversion:
    """The request and reply as neutral messages, computed once on the worker."""

    __slots__ = ("contents", "done", "refusal", "reply_parts", "system")

    def __init__(
        self, system: Any, contents: Any, reply_parts: Sequence[Any], refusal: str | None
    ) -> None:
        self.system = system
        self.contents = contents
        self.reply_parts = reply_parts
        self.refusal = refusal
        self.done: tuple[list[ChatMessage], ChatMessage | None] | None = None

    def _get(self) -> tuple[list[ChatMessage], ChatMessage | None]:
        if self.done is None:
            self.done = request_messages(self.system, self.contents, self.reply_parts)
        return self.done

    def messages(self) -> list[ChatMessage]:
        return self._get()[0]

    def reply(self) -> ChatMessage | None:
        reply = self._get()[1]
        if reply is not None and self.refusal and not reply.get("content"):
            reply = {**reply, "refusal": self.refusal}
        return reply


class Usage:
    """``usage_metadata`` dumped on the worker (the SDK's field names, JSON values)."""

    __slots__ = ("src",)

    def __init__(self, src: Any) -> None:
        self.src = src

    def __call__(self) -> dict[str, Any] | None:
        dump = getattr(self.src, "model_dump", None)
        data = dump(mode="json", exclude_none=True) if callable(dump) else dict(self.src)
        return data if isinstance(data, dict) else None


def enum_text(value: Any) -> str | None:
    """An SDK enum (``FinishReason.STOP``) or a string as its API value."""
    value = getattr(value, "value", value)
    return value if isinstance(value, str) else None


def candidate_parts(response: Any) -> list[Any]:
    """The first candidate's parts (the SDK answers with the first), or none."""
    candidates = getattr(response, "candidates", None)
    if not candidates:
        return []
    content = getattr(candidates[0], "content", None)
    parts = getattr(content, "parts", None) if content is not None else None
    return list(parts) if parts else []


def refusal_of(response: Any, finish: str | None, parts: Sequence[Any]) -> str | None:
    """Why a response holds no answer: a blocked prompt, or a candidate stopped early."""
    if parts:
        return None
    feedback = getattr(response, "prompt_feedback", None)
    blocked = enum_text(getattr(feedback, "block_reason", None)) if feedback else None
    if blocked:
        return f"[prompt blocked: {blocked}]"
    if finish and finish != "STOP":
        return f"[no content: {finish}]"
    return None


def finish_reason(response: Any) -> str | None:
    candidates = getattr(response, "candidates", None)
    if not candidates:
        return None
    return enum_text(getattr(candidates[0], "finish_reason", None))


def record_response(call: Call, response: Any) -> None:
    """Record a complete response; with automatic function calling, its history (each
    call the SDK ran and its result) is the request."""
    afc = getattr(response, "automatic_function_calling_history", None)
    contents = list(afc) if afc else call.contents
    parts = candidate_parts(response)
    finish = finish_reason(response)
    conversion = Conversion(call.system, contents, parts, refusal_of(response, finish, parts))
    rid = getattr(response, "response_id", None)
    record_reply(
        call,
        conversion,
        model=getattr(response, "model_version", None),
        usage=getattr(response, "usage_metadata", None),
        finish=finish,
        response_id=rid,
        properties=call.properties(rid),
    )


def record_reply(
    call: Call,
    conversion: Conversion,
    *,
    model: Any,
    usage: Any,
    finish: str | None,
    response_id: Any,
    properties: dict[str, Any],
    error: BaseException | None = None,
    partial: bool = False,
) -> None:
    """Record one answered call (a response, or a stream's chunks) and remember its
    answer for ``gf.rate``."""
    call.gfc.record(
        LLMCall(
            call.conv,
            call.key,
            messages=conversion.messages,
            reply=conversion.reply,
            model=model if isinstance(model, str) and model else call.model,
            usage=Usage(usage) if usage is not None else None,
            usage_kind="gemini",
            provider=call.cfg.provider,
            finish_reason=finish,
            started_at=call.started,
            error=error,
            partial=partial,
            properties=properties,
        )
    )
    remember_answer(response_id, call)


def finish(call: Call, response: Any) -> Any:
    """Record a completed call. Returns ``response`` unchanged."""
    try:
        record_response(call, response)
    except Exception as exc:
        log_failure("after the call", exc)
    return response


def begin_for(cfg: Config, api: str) -> Any:
    return functools.partial(begin, cfg, api)

"""Chat and Responses streams: recorded once when the caller's stream ends.

The SDK's ``Stream`` / ``AsyncStream`` is tapped in place (core/clientwrap.py); a stream
that ends early is recorded as partial, rebuilt from what arrived.
"""

from __future__ import annotations

import functools
from typing import Any

from ..core.clientwrap import StreamTap, lazy_usage
from ..core.events import LLMCall
from .call import Call, remember_answer
from .chat import chat_inputs_fn, chat_stream_reply
from .responses import (
    record_response,
    response_chains,
    responses_inputs_fn,
    responses_partial_reply,
)


class OpenAIStreamTap(StreamTap[Call]):
    """A chat or Responses stream; hides the usage-only chunk we asked for."""

    __slots__ = ("usage",)

    def __init__(self, call: Call) -> None:
        super().__init__(call)
        self.usage: Any = None

    def keep(self, item: Any) -> bool:
        if self.call.hide_usage and not item.choices:
            self.usage = item.usage  # the usage chunk we asked for: not the caller's
            return False
        return super().keep(item)

    def record(self, how: str, error: BaseException | None) -> None:
        if self.call.api == "chat":
            self._finish_chat(how, error)
        else:
            self._finish_responses(how, error)

    def _finish_chat(self, how: str, error: BaseException | None) -> None:
        call, items = self.call, self.items
        first = items[0] if items else None
        usage = self.usage
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
                properties=self.stream_props(how, getattr(first, "id", None)),
            )
        )
        remember_answer(getattr(first, "id", None), call)

    def _finish_responses(self, how: str, error: BaseException | None) -> None:
        call, items = self.call, self.items
        for event in reversed(items):
            if getattr(event, "type", None) in (
                "response.completed",
                "response.incomplete",
                "response.failed",
            ):
                record_response(call, event.response, self.stream_props(how, None))
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
                reply=functools.partial(
                    responses_partial_reply, items, rid if call.chained else None
                ),
                model=getattr(started, "model", None) or call.model,
                provider=call.cfg.provider,
                started_at=call.started,
                error=error,
                partial=True,
                properties=self.stream_props(how, rid),
            )
        )
        remember_answer(rid, call)

"""``stream=True`` streams: the tap that notes the events and records the call once when
the caller's stream ends (partial when it ended early)."""

from __future__ import annotations

import functools
from typing import Any

from ..core.events import LLMCall
from ..kit import (
    StreamTap,
    lazy_usage,
    record_failure,
)
from ..kit.anthropic_format import inputs, stream_reply
from .call import Call


class AnthropicStreamTap(StreamTap[Call]):
    """Records a raw Messages stream (``message_start`` ... ``message_stop``)."""

    __slots__ = ()

    def record(self, how: str, error: BaseException | None) -> None:
        call, events = self.call, self.items
        started: Any = None
        delta: Any = None
        stopped = False
        for event in events:
            kind = getattr(event, "type", None)
            if kind == "message_start":
                started = event.message
            elif kind == "message_delta":
                delta = event
            elif kind == "message_stop":
                stopped = True
        if started is None and error is not None:
            record_failure(call, error, functools.partial(inputs, call.system, call.inputs))
            return
        stop = getattr(getattr(delta, "delta", None), "stop_reason", None)
        complete = how == "exhausted" and error is None and stopped
        call.gfc.record(
            LLMCall(
                call.conv,
                call.key,
                messages=functools.partial(inputs, call.system, call.inputs),
                reply=functools.partial(stream_reply, events),
                model=getattr(started, "model", None) or call.model,
                usage=lazy_usage(_MergedUsage(started, delta)),
                usage_kind="anthropic",
                provider=call.cfg.provider,
                finish_reason=stop if isinstance(stop, str) else None,
                started_at=call.started,
                error=error,
                partial=not complete,
                properties=self.stream_props(how, getattr(started, "id", None)),
            )
        )


class _MergedUsage:
    """``message_start`` usage updated by the cumulative ``message_delta`` usage; dumped
    on the worker (through :class:`LazyUsage`)."""

    __slots__ = ("delta", "start")

    def __init__(self, start: Any, delta: Any) -> None:
        self.start = start
        self.delta = delta

    def model_dump(self, exclude_none: bool = True) -> dict[str, Any]:
        data = dict(lazy_usage(getattr(self.start, "usage", None)) or {})
        data.update(lazy_usage(getattr(self.delta, "usage", None)) or {})
        return data

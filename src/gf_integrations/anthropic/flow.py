"""Before and after each Messages API call: snapshot the request and resolve its
conversation on the caller's thread; record the reply, tap the stream or record the error."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from anthropic import AsyncStream, Stream

from ..kit import (
    get_field,
    record_failure,
    recorder_for,
    resolve_identity,
    snapshot,
    tap_async,
    tap_sync,
)
from .call import Call, Config, log_failure
from .messages import inputs, opening, record_message
from .stream import AnthropicStreamTap


def begin(cfg: Config, api: str, kwargs: dict[str, Any]) -> Call | None:
    """Decide whether to record and snapshot what we need. None means pass through."""
    try:
        gfc = recorder_for(cfg, kwargs)
        if gfc is None:
            return None
        call = Call(cfg, gfc, api, kwargs)
        msgs = snapshot(call, kwargs, "messages")
        call.inputs = msgs
        system = kwargs.get("system")
        call.system = system if isinstance(system, str) else snapshot(call, call.kwargs, "system")
        metadata = kwargs.get("metadata")
        user = get_field(metadata, "user_id") if isinstance(metadata, Mapping) else None
        call.conv = resolve_identity(
            call,
            native_conversation_id=None,
            native_user_id=user if isinstance(user, str) and user else None,
            opening=lambda: opening(call.system, msgs),
            prefix="anthropic",
        )
        return call
    except Exception as exc:
        log_failure("before the call", exc)
        return None


def fail(call: Call, exc: BaseException) -> None:
    record_failure(call, exc, functools.partial(inputs, call.system, call.inputs))


def finish(call: Call, result: Any) -> Any:
    """Record a completed call (or tap a stream). Returns ``result`` unchanged."""
    try:
        if isinstance(result, Stream):
            tap_sync(result, AnthropicStreamTap(call))
        elif isinstance(result, AsyncStream):
            tap_async(result, AnthropicStreamTap(call))
        else:
            record_message(call, result)
    except Exception as exc:
        log_failure("after the call", exc)
    return result

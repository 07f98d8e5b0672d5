"""Messages API replies recorded; reading the Messages format itself is
``kit.anthropic_format``'s (shared with ``wrap_bedrock``'s Claude bodies)."""

from __future__ import annotations

import functools
from typing import Any

from ..core.events import LLMCall
from ..kit import lazy_usage
from ..kit.anthropic_format import TOOL_USE, assistant_reply, inputs, opening
from .call import Call

__all__ = ["TOOL_USE", "assistant_reply", "inputs", "opening", "record_message"]


def record_message(call: Call, message: Any) -> None:
    stop = getattr(message, "stop_reason", None)
    call.gfc.record(
        LLMCall(
            call.conv,
            call.key,
            messages=functools.partial(inputs, call.system, call.inputs),
            reply=functools.partial(assistant_reply, getattr(message, "content", None), None),
            model=getattr(message, "model", None) or call.model,
            usage=lazy_usage(getattr(message, "usage", None)),
            usage_kind="anthropic",
            provider=call.cfg.provider,
            finish_reason=stop if isinstance(stop, str) else None,
            started_at=call.started,
            properties=call.properties(getattr(message, "id", None)),
        )
    )

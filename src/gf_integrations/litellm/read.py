"""Reading what LiteLLM hands its callbacks: the ``kwargs`` of a call (LiteLLM's
``model_call_details``) and its OpenAI-format response. The chat format itself is read by
``kit.openai_format``; here only LiteLLM's own fields."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from ..core.events import ChatMessage, now
from ..kit import get_field
from ..kit.openai_format import chat_message

# The native ids LiteLLM users already set: ``metadata={"session_id": ...}`` (what
# LiteLLM's own loggers read as a session), ``litellm_session_id=``, and the user in
# ``metadata`` or the OpenAI ``user`` parameter (the proxy keeps it as its end user).
CONVERSATION_KEYS = ("session_id",)
USER_KEYS = ("user_id", "user")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def litellm_params(kwargs: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(kwargs.get("litellm_params"))


def metadata(kwargs: Mapping[str, Any]) -> Mapping[str, Any]:
    """The request's ``metadata`` (LiteLLM keeps it in ``litellm_params``)."""
    return _mapping(litellm_params(kwargs).get("metadata")) or _mapping(kwargs.get("metadata"))


def call_id(kwargs: Mapping[str, Any]) -> str | None:
    return _text(kwargs.get("litellm_call_id")) or _text(
        litellm_params(kwargs).get("litellm_call_id")
    )


def native_ids(kwargs: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(conversation id, user id) the request itself names, or None."""
    md = metadata(kwargs)
    params = litellm_params(kwargs)
    conversation = next((_text(md.get(k)) for k in CONVERSATION_KEYS if _text(md.get(k))), None)
    conversation = (
        conversation
        or _text(params.get("litellm_session_id"))
        or _text(kwargs.get("litellm_session_id"))
    )
    user = next((_text(md.get(k)) for k in USER_KEYS if _text(md.get(k))), None)
    user = (
        user
        or _text(kwargs.get("user"))
        or _text(_mapping(kwargs.get("optional_params")).get("user"))
        or _text(md.get("user_api_key_end_user_id"))  # the proxy's end user
    )
    return conversation, user


def provider(kwargs: Mapping[str, Any]) -> str | None:
    """The provider LiteLLM routed to (``openai``, ``anthropic``, ...)."""
    return _text(kwargs.get("custom_llm_provider")) or _text(
        litellm_params(kwargs).get("custom_llm_provider")
    )


def is_chat(kwargs: Mapping[str, Any]) -> bool:
    """A chat completion (``completion`` / ``acompletion``); other calls are not recorded."""
    kind = kwargs.get("call_type")
    if kind is None:
        return isinstance(kwargs.get("messages"), (list, tuple))
    return str(getattr(kind, "value", kind)) in ("completion", "acompletion")


def at(value: Any) -> dt.datetime:
    """A LiteLLM timestamp (a naive local ``datetime.now()``) as aware UTC."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc)
    return now()


def first_choice(response: Any) -> Any:
    choices = get_field(response, "choices")
    if isinstance(choices, (list, tuple)) and choices:
        return choices[0]
    return None


def reply(response: Any) -> ChatMessage | None:
    """The first choice's message as a neutral reply (on the worker)."""
    message = get_field(first_choice(response), "message")
    if message is None:
        return None
    msg = chat_message(message, {})
    if msg is None:
        return None
    if not msg.get("reasoning"):
        # LiteLLM normalises every provider's reasoning into this field of its Message
        reasoning = get_field(message, "reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            msg["reasoning"] = reasoning
    return msg

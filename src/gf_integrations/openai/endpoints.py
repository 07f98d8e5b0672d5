"""The OpenAI endpoints ``wrap_openai`` records: one row each.

A row says where the endpoint lives on a client (resources and methods: what a given SDK
release lacks is not patched), and how to read its request (on the caller's thread), its
response and its stream (references only; converted on the worker). A new endpoint is one
row and the module that reads it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from ..core.events import ChatMessage
from .call import Call
from .chat import begin_chat, chat_inputs_fn, record_chat, record_chat_stream
from .embeddings import begin_embeddings, embeddings_inputs_fn, record_embeddings
from .responses import (
    begin_responses,
    record_response,
    record_responses_stream,
    responses_inputs_fn,
)
from .stream import OpenAIStreamTap


def _no_stream(tap: OpenAIStreamTap, how: str, error: BaseException | None) -> None:
    """An endpoint that never streams."""


@dataclasses.dataclass(slots=True)
class Endpoint:
    """One API: where it is on a client, and how its request, response and stream read."""

    #: ``properties.api`` of what it records
    api: str
    #: attribute paths of its resources on a client (``client.chat.completions``, ...)
    resources: tuple[tuple[str, ...], ...]
    methods: tuple[str, ...]
    #: snapshot the request and resolve the identity, on the caller's thread
    begin: Callable[[Call, dict[str, Any]], None]
    #: record a complete response
    record: Callable[[Call, Any], None]
    #: the request's messages, for a call the API answered with an error
    inputs: Callable[[Call], Callable[[], list[ChatMessage]]]
    #: record a stream that ended (exhausted, failed, closed or abandoned)
    record_stream: Callable[[OpenAIStreamTap, str, BaseException | None], None] = _no_stream


# Not every SDK release has every resource or method: the Responses API arrived in 1.66;
# before 1.92 `parse` is only on beta.chat.completions (older code still calls it there, a
# separate resource; before 1.50 it posts through chat.completions.create: recorded once,
# see kit.calls).
CHAT = Endpoint(
    api="chat",
    resources=(("chat", "completions"), ("beta", "chat", "completions")),
    methods=("create", "parse"),
    begin=begin_chat,
    record=record_chat,
    inputs=chat_inputs_fn,
    record_stream=record_chat_stream,
)
RESPONSES = Endpoint(
    api="responses",
    resources=(("responses",),),
    methods=("create", "parse"),
    begin=begin_responses,
    record=record_response,
    inputs=lambda call: responses_inputs_fn(call, None),
    record_stream=record_responses_stream,
)
EMBEDDINGS = Endpoint(
    api="embeddings",
    resources=(("embeddings",),),
    methods=("create",),
    begin=begin_embeddings,
    record=record_embeddings,
    inputs=embeddings_inputs_fn,
)

ENDPOINTS = (CHAT, RESPONSES, EMBEDDINGS)

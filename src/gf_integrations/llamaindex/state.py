"""Per-span state the LlamaIndex engine keeps: roots, spans, queries, LLM calls, builds."""

from __future__ import annotations

import collections
import datetime as dt
import logging
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

from ..client import GreenflashClient
from ..core.context import (
    Conv,
)
from ..core.events import (
    ToolResult,
    now,
)
from ..core.ids import new_id
from ..core.targets import AnswerRef, ObjectMap
from .convert import _finish_reason, _method

log = logging.getLogger("gf_integrations")

TAG_CONVERSATION = "gf.conversation_id"
TAG_USER = "gf.user_id"
TAG_ORGANIZATION = "gf.organization_id"

_PENDING_TTL = 300.0  # an LLM stream nobody finishes or closes is closed out after this
# a span LlamaIndex never closes (its event loop ended first, a killed task) is forgotten
# once its root has been idle this long; and at most this many spans are open at once
_SPAN_TTL = 3600.0
_SPANS_MAX = 50_000
_RECENT_MAX = 4096
_BUILD_IDLE = 2.0  # an index build's embedding summary is sent after this idle time
_SWEEP_EVERY = 2.0
_AWAIT_MAX = 256
_CHAT_ENGINE_METHODS = frozenset({"chat", "stream_chat", "achat", "astream_chat"})
_RETRIEVE_METHODS = frozenset({"retrieve", "aretrieve", "_retrieve", "_aretrieve"})
# root span result (Response, agent output) -> its answer (see core/targets.py)
_answers: ObjectMap[AnswerRef] = ObjectMap()


def _chat_messages_above(span: _Span | None) -> list[Any] | None:
    """The chat messages a completion call was flattened from, if it runs inside ``chat``."""
    depth = 0
    while span is not None and depth < 8:
        if isinstance(span.chat_messages, (list, tuple)):
            return list(span.chat_messages)
        span = span.parent
        depth += 1
    return None


def _inside_retrieval(span: _Span | None) -> bool:
    """True when ``span`` runs inside a retriever's ``retrieve``/``aretrieve``."""
    depth = 0
    while span is not None and depth < 64:
        if _method(span.id)[1] in _RETRIEVE_METHODS:
            return True
        span = span.parent
        depth += 1
    return False


class _Root:
    """Per-root-span state: the conversation identity captured in the host's context."""

    __slots__ = (
        "agent",
        "answer",
        "chat_engine",
        "client",
        "conv",
        "explicit",
        "holders",
        "id",
        "llm_active",
        "query",
        "react",
        "react_llm",
        "react_text",
        "span",
        "started",
        "touched",
    )

    def __init__(self, span_id: str, client: GreenflashClient, conv: Conv, explicit: bool) -> None:
        self.id = span_id
        self.client = client
        self.conv = conv
        self.explicit = explicit  # a conversation was named (scope, tags, keywords)
        self.holders = 1  # refcount: open spans + pending LLM calls + a pending query
        self.query: _Query | None = None
        self.agent = False
        self.chat_engine = False
        self.llm_active: _LLM | None = None
        self.react = False
        self.react_llm: _LLM | None = None
        self.react_text: str | None = None  # raw text of the last step without tool calls
        self.span: _Span | None = None
        self.started = time.monotonic()
        self.touched = self.started
        self.answer: str | None = None  # key of the last answer-bearing event (gf.rate)


class _Span:
    __slots__ = (
        "chat_messages",
        "cls",
        "held",
        "id",
        "llm",
        "name",
        "parent",
        "root",
        "started",
        "step",
        "tool",
        "tool_input",
        "tools_open",
    )

    def __init__(self, span_id: str, parent: _Span | None, root: _Root) -> None:
        self.id = span_id
        self.parent = parent
        self.root = root
        # the LLM call this span belongs to (inherited: inner complete/chat spans)
        self.llm: _LLM | None = parent.llm if parent is not None else None
        self.name = ""
        # the instance's class: llama-index-core 0.12 names a span by the class that
        # defines the method (BaseRetriever.retrieve for every retriever)
        self.cls = ""
        self.tool: Any = None  # ToolCall event of a call_tool span, or the tool instance
        self.tool_input: Any = None
        # a tool's result waiting for the results of its siblings that started earlier
        self.held: ToolResult | None = None
        # this span's tool children in the order they started (parallel tool calls)
        self.tools_open: collections.deque[_Span] | None = None
        self.step = False
        self.started: dt.datetime | None = None
        # the messages of an LLM's chat method: a completion-only model (OpenAILike with
        # is_chat_model=False) flattens them into a prompt and sends no chat event
        self.chat_messages: Any = None


class _Query:
    __slots__ = ("ended", "key", "last", "llm_calls", "span_id", "text")

    def __init__(self, span_id: str, text: str) -> None:
        self.span_id = span_id
        self.key = span_id
        self.text = text
        self.last: _LLM | None = None
        self.llm_calls = 0
        self.ended = False


class _LLM:
    """One recorded LLM call, owned by the outermost LLM-ish span (predict/chat/complete)."""

    __slots__ = (
        "error",
        "exited",
        "finished",
        "instance",
        "kind",
        "messages",
        "model_dict",
        "output",
        "owner",
        "partial",
        "prior",
        "prompt",
        "reply",
        "response",
        "root",
        "silent",
        "started_at",
        "template",
        "template_args",
        "thread",
        "touched",
        "unended_starts",
    )

    def __init__(self, owner: str, root: _Root, instance: Any) -> None:
        self.owner = owner
        self.root = root
        self.instance = instance
        self.kind = ""
        self.messages: list[Any] | None = None
        self.prompt: str | None = None
        self.template: Any = None
        self.template_args: Mapping[str, Any] | None = None
        self.model_dict: Any = None
        self.response: Any = None  # ChatResponse / CompletionResponse at the end
        self.reply: Any = None  # latest partial response while streaming
        # the one before: with stream usage on, the last chunk holds only usage and the
        # finish reason is in the chunk before it
        self.prior: Any = None
        self.output: str | None = None  # LLMPredictEndEvent output
        self.unended_starts = 0  # start events whose end event has not come yet
        self.exited = False
        self.finished = False
        self.partial = False
        self.silent = False
        self.error: BaseException | str | None = None
        self.started_at = now()
        self.touched = time.monotonic()
        self.thread = threading.get_ident()

    def drop_payload(self) -> None:
        """Release framework objects once recorded (exited spans may keep this alive)."""
        self.messages = None
        self.response = self.reply = self.prior = self.template = self.template_args = None
        self.output = self.prompt = None

    def finish_reason(self) -> str | None:
        return _finish_reason(self.response) or _finish_reason(self.prior)


class _Build:
    """Embedding calls outside any turn (index builds), summed into one message."""

    __slots__ = ("client", "conv", "count", "dims", "first", "key", "model", "touched")

    def __init__(self, conv: Conv, client: GreenflashClient) -> None:
        self.conv = conv
        self.client = client
        self.key = new_id()
        self.count = 0
        self.dims: int | None = None
        self.model: str | None = None
        self.first = now()
        self.touched = time.monotonic()


# -- the engine shared by both handlers ---------------------------------------------------------


def _is_ancestor(ancestor_id: str, span: _Span | None) -> bool:
    depth = 0
    while span is not None and depth < 64:
        if span.id == ancestor_id:
            return True
        span = span.parent
        depth += 1
    return False


def _spans_max() -> int:
    """The open-span bound, read from the package so that one assignment tunes it."""
    bound: int = sys.modules[__package__]._SPANS_MAX
    return bound


def _root_touched(span: _Span) -> float:
    """When a span's root last saw activity: an open span expires with its idle root."""
    return span.root.touched


def _llm_touched(llm: _LLM) -> float:
    """When a pending LLM call (a stream) last saw activity."""
    return llm.touched

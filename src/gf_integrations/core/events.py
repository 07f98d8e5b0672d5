"""Neutral events: what integrations hand to the recorder.

Integrations build these on the host's thread with plain values (or a zero-argument
callable that produces them later, see :data:`Lazy`), then return. Everything
expensive (mapping, ids, safe JSON, masking, validation) happens later, one event at a
time: on the uploader's worker, or on a host thread assisting a starved worker
(docs/DESIGN.md section 3).

Chat messages are :class:`ChatMessage` dicts::

    {"role": "system" | "user" | "assistant" | "tool",
     "content": str | None,
     "id": native message id or None,        # stable ids dedupe resent history
     "tool_calls": [{"id": str, "name": str, "arguments": dict | str}],
     "tool_call_id": str,                    # on role "tool"
     "name": str,                            # tool name on role "tool"
     "status": "error" | None,               # a tool message that reports an error
     "refusal": str, "reasoning": str}
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypedDict, TypeVar, Union

from .context import Conv

T = TypeVar("T")
Lazy = Union[T, Callable[[], T]]


class ToolCallSpec(TypedDict, total=False):
    """A tool call requested by the model."""

    id: str | None
    name: str
    arguments: Any


class ChatMessage(TypedDict, total=False):
    """A chat message in neutral form (see module docstring)."""

    role: str
    content: str | None
    id: str | None
    tool_calls: list[ToolCallSpec]
    tool_call_id: str | None
    name: str | None
    status: str | None
    refusal: str | None
    reasoning: str | None


class Document(TypedDict, total=False):
    """A retrieved document."""

    id: str | None
    text: str | None
    metadata: Mapping[str, Any] | None
    score: float | None


class PromptComponent(TypedDict, total=False):
    """A system prompt component in neutral form (``{{var}}`` placeholders)."""

    content: str
    name: str | None
    type: str | None
    source: str | None
    is_dynamic: bool | None
    external_component_id: str | None


@dataclasses.dataclass(slots=True)
class SystemPrompt:
    """A system prompt: plain content, or template components with variables."""

    content: str | None = None
    components: list[PromptComponent] | None = None
    variables: dict[str, str] | None = None
    external_prompt_id: str | None = None


def now() -> dt.datetime:
    """Aware UTC now: every ``createdAt`` is stamped from this."""
    return dt.datetime.now(dt.timezone.utc)


@dataclasses.dataclass(slots=True)
class LLMCall:
    """One model call (chat or completion) and its reply.

    ``messages`` is the full prompt of this call, system messages included; the
    recorder sends the system prompt once per conversation, emits each history
    message not yet sent (so a resent growing history stores each message once), then
    the reply: ``thought`` + ``tool_call`` when it requests tools, else ``role:
    assistant`` (plain chat) or ``final_response`` (agentic turn, or ``final=True``).
    With ``record_inputs=False`` only the reply is recorded (e.g. the synthesis call of
    a query engine, whose prompt is not the user's words).
    """

    conv: Conv
    key: str
    messages: Lazy[Sequence[ChatMessage]] = ()
    reply: Lazy[ChatMessage | None] = None
    model: str | None = None
    usage: Lazy[Mapping[str, Any] | None] = None
    provider: str | None = None
    finish_reason: str | None = None
    started_at: dt.datetime | None = None
    ended_at: dt.datetime = dataclasses.field(default_factory=now)
    error: BaseException | str | None = None
    partial: bool = False
    system_prompt: SystemPrompt | None = None
    final: bool | None = None
    record_inputs: bool = True
    properties: Mapping[str, Any] | None = None
    #: the shape ``usage`` is in ("openai_chat", "anthropic", "gemini", "bedrock", ...):
    #: core/usage.py converts it to the one vocabulary; None: recognised by its keys
    usage_kind: str | None = None


@dataclasses.dataclass(slots=True)
class UserInput:
    """The user's words for a turn, when the framework knows them apart from a prompt."""

    conv: Conv
    key: str
    content: str
    at: dt.datetime = dataclasses.field(default_factory=now)
    properties: Mapping[str, Any] | None = None


@dataclasses.dataclass(slots=True)
class ToolResult:
    """A tool finished (``output``) or failed (``error``).

    Becomes ``observation`` / ``tool_error`` parented to the ``tool_call`` with the same
    ``tool_call_id``; if that tool call was never seen, one is emitted first.
    """

    conv: Conv
    key: str
    tool_name: str | None
    tool_call_id: str | None = None
    input: Any = None
    output: Any = None
    error: BaseException | str | None = None
    started_at: dt.datetime | None = None
    at: dt.datetime = dataclasses.field(default_factory=now)
    properties: Mapping[str, Any] | None = None


@dataclasses.dataclass(slots=True)
class Retrieval:
    """A retrieval: query and documents. The text also becomes the next answer's context."""

    conv: Conv
    key: str
    query: Any
    documents: Lazy[Sequence[Document]] = ()
    retriever: str | None = None
    started_at: dt.datetime | None = None
    at: dt.datetime = dataclasses.field(default_factory=now)
    error: BaseException | str | None = None
    properties: Mapping[str, Any] | None = None


@dataclasses.dataclass(slots=True)
class Embedding:
    """An embedding call: counts and dimensions only, never vectors."""

    conv: Conv
    key: str
    model: str | None = None
    count: int = 0
    dimensions: int | None = None
    usage: Lazy[Mapping[str, Any] | None] = None
    started_at: dt.datetime | None = None
    at: dt.datetime = dataclasses.field(default_factory=now)
    properties: Mapping[str, Any] | None = None
    #: the shape ``usage`` is in, as :attr:`LLMCall.usage_kind`
    usage_kind: str | None = None


@dataclasses.dataclass(slots=True)
class Step:
    """A structural step (chain, graph node, workflow step), recorded only when asked for.

    ``phase`` start/end/error becomes ``chain_start`` / ``chain_end`` (``kind="chain"``)
    or a single ``task`` / ``workflow`` message on end (``kind="task"``/``"workflow"``).
    ``parent_key`` names the enclosing step's ``key``.
    """

    conv: Conv
    key: str
    name: str
    phase: Literal["start", "end", "error"]
    kind: Literal["chain", "task", "workflow"] = "chain"
    data: Any = None
    parent_key: str | None = None
    at: dt.datetime = dataclasses.field(default_factory=now)
    properties: Mapping[str, Any] | None = None


@dataclasses.dataclass(slots=True)
class FinalAnswer:
    """The last answer of an agentic turn, when it does not come from an LLM reply."""

    conv: Conv
    key: str
    content: Any
    model: str | None = None
    at: dt.datetime = dataclasses.field(default_factory=now)
    properties: Mapping[str, Any] | None = None


@dataclasses.dataclass(slots=True)
class SetSystemPrompt:
    """Set the conversation's system prompt (sent once, again only when it changes)."""

    conv: Conv
    prompt: SystemPrompt


@dataclasses.dataclass(slots=True)
class RawMessage:
    """Escape hatch: one message with explicit fields (snake_case wire names).

    ``fields`` must hold ``role`` or ``message_type``; ``parent_key`` names another
    event's ``key`` in the same conversation.
    """

    conv: Conv
    key: str
    fields: Mapping[str, Any]
    parent_key: str | None = None
    at: dt.datetime = dataclasses.field(default_factory=now)


Event = Union[
    LLMCall,
    UserInput,
    ToolResult,
    Retrieval,
    Embedding,
    Step,
    FinalAnswer,
    SetSystemPrompt,
    RawMessage,
]


def resolve(value: Lazy[T]) -> T:
    """Evaluate a :data:`Lazy` value (where mapping runs)."""
    if callable(value):
        return value()
    return value

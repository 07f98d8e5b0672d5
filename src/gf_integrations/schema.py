"""Pydantic v2 models of the Greenflash wire format: ``POST /messages``, and the
feedback endpoints ``POST /ratings``, ``/events``, ``/users`` and ``/organizations``.

This module is the single source of truth for the wire contract: the uploader
validates against it, the recorder builds it, and the local collector parses
requests with it. Field names are snake_case in Python and serialise by alias to
the exact camelCase names of the API; ``None`` fields are omitted (use
:func:`dump_request`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

__all__ = [
    "COMPONENT_SOURCES",
    "COMPONENT_TYPES",
    "EVENT_INFLUENCES",
    "EVENT_VALUE_TYPES",
    "MESSAGE_TYPES",
    "ROLES",
    "Component",
    "CreateMessageResponse",
    "EventCreateRequest",
    "MessageCreateRequest",
    "MessageItem",
    "MessageResult",
    "OrganizationCreateRequest",
    "RatingLogRequest",
    "SystemPromptObject",
    "TemplateMatch",
    "UserCreateRequest",
    "Voice",
    "VoiceCall",
    "VoiceCallLatency",
    "VoiceProsody",
    "dump_request",
    "parse_time",
]

ROLES = ("user", "assistant", "system")
MESSAGE_TYPES = (
    "user_message",
    "assistant_message",
    "system_message",
    "final_response",
    "thought",
    "tool_call",
    "observation",
    "retrieval",
    "memory_read",
    "memory_write",
    "chain_start",
    "chain_end",
    "embedding",
    "tool_error",
    "callback",
    "llm",
    "task",
    "workflow",
)
COMPONENT_TYPES = ("system", "user", "tool", "guardrail", "rag", "agent", "other")
COMPONENT_SOURCES = ("customer", "participant", "greenflash", "agent")
EVENT_INFLUENCES = ("positive", "negative", "neutral")
EVENT_VALUE_TYPES = ("currency", "numeric", "text", "boolean")

Role = Literal["user", "assistant", "system"]
MessageType = Literal[
    "user_message",
    "assistant_message",
    "system_message",
    "final_response",
    "thought",
    "tool_call",
    "observation",
    "retrieval",
    "memory_read",
    "memory_write",
    "chain_start",
    "chain_end",
    "embedding",
    "tool_error",
    "callback",
    "llm",
    "task",
    "workflow",
]


class _Wire(BaseModel):
    """Base: camelCase aliases, population by either name, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        str_strip_whitespace=False,
    )


class Component(_Wire):
    """One component of a structured system prompt."""

    content: str
    name: str | None = None
    type: Literal["system", "user", "tool", "guardrail", "rag", "agent", "other"] | None = None
    source: Literal["customer", "participant", "greenflash", "agent"] | None = None
    is_dynamic: bool | None = None
    external_component_id: str | None = None
    component_id: str | None = None


class SystemPromptObject(_Wire):
    """A system prompt given as an object: ``content`` xor ``components``."""

    content: str | None = None
    components: list[Component] | None = None
    external_prompt_id: str | None = None
    prompt_id: str | None = None
    variables: dict[str, str] | None = None

    @model_validator(mode="after")
    def _content_xor_components(self) -> SystemPromptObject:
        if self.content is not None and self.components is not None:
            raise ValueError("systemPrompt: give either content or components, not both")
        if (
            self.content is None
            and self.components is None
            and self.prompt_id is None
            and self.external_prompt_id is None
        ):
            raise ValueError(
                "systemPrompt: an object needs content, components, promptId or externalPromptId"
            )
        return self


class VoiceProsody(_Wire):
    """Prosody signals for a voice turn."""

    arousal: float | None = None
    emotion: str | None = None
    sentiment_label: Literal["positive", "neutral", "negative"] | None = None
    sentiment_score: float | None = None


class Voice(_Wire):
    """Voice-specific signals for one message."""

    asr_confidence: float | None = None
    audio_url: str | None = None
    barge_in: bool | None = None
    duration_ms: int | None = None
    ended_at: int | None = None
    prosody: VoiceProsody | None = None
    response_latency_ms: int | None = None
    silence_before_ms: int | None = None
    speaker: str | None = None
    started_at: int | None = None
    was_interrupted: bool | None = None


class VoiceCallLatency(_Wire):
    """Latency aggregates of a voice call."""

    asr_ms: int | None = None
    # to_camel would give "e2EMs"; the API's name is "e2eMs"
    e2e_ms: int | None = Field(default=None, alias="e2eMs")
    llm_ms: int | None = None
    tts_ms: int | None = None


class VoiceCall(_Wire):
    """Voice-specific signals for a whole conversation."""

    call_successful: bool | None = None
    duration_ms: int | None = None
    ended_reason: str | None = None
    interruption_count: int | None = None
    latency: VoiceCallLatency | None = None
    platform: (
        Literal[
            "vapi",
            "retell",
            "elevenlabs",
            "openai_realtime",
            "livekit",
            "bland",
            "synthflow",
            "simpleai",
            "other",
        ]
        | None
    ) = None
    platform_call_id: str | None = None
    recording_url: str | None = None
    silence_count: int | None = None
    structured_outputs: dict[str, Any] | None = None


class MessageItem(_Wire):
    """One message: exactly one of ``role`` or ``message_type``."""

    role: Role | None = None
    message_type: MessageType | None = None
    content: str | None = None
    context: str | None = None
    input: dict[str, Any] | None = None
    output: dict[str, Any] | None = None
    tool_name: str | None = None
    model: str | None = None
    properties: dict[str, Any] | None = None
    # The API accepts a date or an ISO-8601 string; we keep the string form.
    created_at: str | None = None
    external_message_id: str | None = None
    parent_external_message_id: str | None = None
    parent_message_id: str | None = None
    voice: Voice | None = None

    @model_validator(mode="after")
    def _rules(self) -> MessageItem:
        if (self.role is None) == (self.message_type is None):
            raise ValueError("message: give exactly one of role or messageType")
        if self.message_type == "tool_call" and not self.tool_name:
            raise ValueError("message: toolName is required for messageType 'tool_call'")
        if self.parent_external_message_id is not None and self.parent_message_id is not None:
            raise ValueError(
                "message: give at most one of parentExternalMessageId and parentMessageId"
            )
        return self


class MessageCreateRequest(_Wire):
    """The body of ``POST /messages``."""

    external_user_id: str = Field(min_length=1)
    messages: list[MessageItem] = Field(min_length=1)
    conversation_id: str | None = None
    external_conversation_id: str | None = None
    product_id: str | None = None
    external_organization_id: str | None = None
    model: str | None = None
    properties: dict[str, Any] | None = None
    system_prompt: Union[str, SystemPromptObject, None] = None
    sample_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    force_sample: bool | None = None
    voice_call: VoiceCall | None = None

    @model_validator(mode="after")
    def _one_conversation_key(self) -> MessageCreateRequest:
        if not (self.conversation_id or self.external_conversation_id or self.product_id):
            raise ValueError(
                "request: one of conversationId, externalConversationId or productId is required"
            )
        return self


class MessageResult(_Wire):
    """One processed message in the response."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    message_id: str
    message_type: str
    status: Literal["created", "deduplicated"]
    external_message_id: str | None = None


class TemplateMatch(_Wire):
    """Template match info for a plain-string system prompt."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    matched: bool
    confidence: Literal["exact", "high", "medium"] | None = None
    detected_variables: dict[str, str] | None = None
    prompt_id: str | None = None


class CreateMessageResponse(_Wire):
    """The success response of ``POST /messages``."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    success: bool
    conversation_id: str
    messages: list[MessageResult]
    system_prompt_prompt_id: str | None = None
    system_prompt_component_ids: list[str] = Field(default_factory=list)
    prompt_variables: dict[str, str] | None = None
    template_match: TemplateMatch | None = None


# -- feedback and outcomes: POST /ratings, /events, /users, /organizations -----------------


def parse_time(value: str) -> dt.datetime | None:
    """An ISO-8601 date or date-time as an aware datetime (UTC when no offset), or None."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    try:
        moment.astimezone(dt.timezone.utc)
    except (OverflowError, ValueError):
        return None
    return moment


def _iso_time(value: str | None, name: str) -> str | None:
    if value is not None and parse_time(value) is None:
        raise ValueError(f"{name}: not an ISO-8601 date or date-time")
    return value


class RatingLogRequest(_Wire):
    """The body of ``POST /ratings``: a rating of a conversation or of one message."""

    product_id: str = Field(min_length=1)
    rating: float = Field(allow_inf_nan=False)
    rating_max: float = Field(allow_inf_nan=False)
    rating_min: float = Field(allow_inf_nan=False)
    conversation_id: str | None = None
    external_conversation_id: str | None = None
    external_message_id: str | None = None
    feedback: str | None = None
    message_id: str | None = None
    # The API accepts a date or an ISO-8601 string; we keep the string form.
    rated_at: str | None = None

    @model_validator(mode="after")
    def _rules(self) -> RatingLogRequest:
        if not (
            self.conversation_id
            or self.external_conversation_id
            or self.message_id
            or self.external_message_id
        ):
            raise ValueError(
                "rating: one of conversationId, externalConversationId, messageId or "
                "externalMessageId is required"
            )
        if self.rating_min >= self.rating_max:
            raise ValueError("rating: ratingMin must be less than ratingMax")
        if not self.rating_min <= self.rating <= self.rating_max:
            raise ValueError("rating: rating must be between ratingMin and ratingMax (inclusive)")
        _iso_time(self.rated_at, "ratedAt")
        return self


class EventCreateRequest(_Wire):
    """The body of ``POST /events``: a business outcome, optionally tied to a conversation."""

    event_type: str = Field(min_length=1)
    product_id: str = Field(min_length=1)
    value: str
    conversation_id: str | None = None
    event_at: str | None = None
    external_conversation_id: str | None = None
    external_organization_id: str | None = None
    external_user_id: str | None = None
    force_sample: bool | None = None
    influence: Literal["positive", "negative", "neutral"] | None = None
    insert_id: str | None = None
    organization_id: str | None = None
    properties: dict[str, Any] | None = None
    quality_impact_score: float | None = Field(default=None, ge=-1.0, le=1.0)
    sample_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    user_id: str | None = None
    value_type: Literal["currency", "numeric", "text", "boolean"] | None = None

    @model_validator(mode="after")
    def _rules(self) -> EventCreateRequest:
        _iso_time(self.event_at, "eventAt")
        return self


class UserCreateRequest(_Wire):
    """The body of ``POST /users``: create or update a user's profile."""

    external_user_id: str = Field(min_length=1)
    anonymized: bool | None = None
    email: str | None = None
    external_organization_id: str | None = None
    name: str | None = None
    organization_id: str | None = None
    phone: str | None = None
    properties: dict[str, Any] | None = None


class OrganizationCreateRequest(_Wire):
    """The body of ``POST /organizations``: create or update an organization."""

    external_organization_id: str = Field(min_length=1)
    name: str | None = None
    properties: dict[str, Any] | None = None


def dump_request(model: BaseModel) -> dict[str, Any]:
    """Serialise a wire model to its JSON-ready camelCase dict, omitting ``None``."""
    return model.model_dump(by_alias=True, exclude_none=True, mode="json")

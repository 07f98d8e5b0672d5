"""Feedback and outcomes as neutral events, and their wire requests.

The public calls (``gf.rate``, ``gf.track_event``, ``gf.identify_user``,
``gf.identify_organization``) build these events on the host's thread with plain values
and queue them behind the conversations' messages. On the worker, :func:`to_request`
turns one into the body of ``POST /ratings``, ``/events``, ``/users`` or
``/organizations``: the rated answer's ``externalMessageId`` is looked up in the
recorder's answer index, the conversation's sampling decision applies, free text and
properties go through the mask hook and safe JSON.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any, Literal, Union

from ..common.once import warn_once
from ..transport.request import Part
from .context import Conv
from .ids import stable_id
from .recorder import Mapper, batch_key
from .safejson import to_jsonable, truncate_text
from .targets import AnswerRef
from .wire import MESSAGES_PATH, encode_json
from .wireform import iso_utc

__all__ = [
    "FEEDBACK_EVENTS",
    "FeedbackEvent",
    "OutcomeEvent",
    "Rating",
    "Traits",
    "WireRequest",
    "feedback_parts",
    "to_request",
]

log = logging.getLogger("gf_integrations")


@dataclasses.dataclass(slots=True)
class Rating:
    """A rating of a recorded answer (``answer``), or of explicit ids."""

    product_id: str
    rating: float
    rating_min: float
    rating_max: float
    rated_at: dt.datetime
    feedback: str | None = None
    answer: AnswerRef | None = None
    external_message_id: str | None = None
    external_conversation_id: str | None = None


@dataclasses.dataclass(slots=True)
class OutcomeEvent:
    """A business event, linked to a conversation (``conv``), a user or an organization."""

    product_id: str
    event_type: str
    value: str
    event_at: dt.datetime
    conv: Conv | None = None
    external_conversation_id: str | None = None
    external_user_id: str | None = None
    external_organization_id: str | None = None
    value_type: str | None = None
    influence: str | None = None
    quality_impact_score: float | None = None
    properties: Mapping[str, Any] | None = None
    insert_id: str | None = None
    force_sample: bool = False
    sample_rate: float | None = None


@dataclasses.dataclass(slots=True)
class Traits:
    """A user's or an organization's profile (wire names; masked on the worker)."""

    kind: Literal["users", "organizations"]
    fields: dict[str, Any]


FeedbackEvent = Union[Rating, OutcomeEvent, Traits]
FEEDBACK_EVENTS = (Rating, OutcomeEvent, Traits)

# fields of a profile that may hold personal data: they go through the mask hook
_MASKED_TRAITS = ("name", "email", "phone", "properties")


@dataclasses.dataclass(slots=True)
class WireRequest:
    """One request for the uploader: ``POST {base_url}{path}`` with ``body``.

    ``after`` names the conversation whose queued messages must be delivered first (the
    rated answer must exist before its rating arrives).
    """

    path: str
    body: dict[str, Any]
    after: Conv | None = None


def feedback_parts(event: FeedbackEvent, mapper: Mapper) -> list[Part]:
    """The transport part for ``event`` (none when sampled out).

    A rating or an event follows the messages of its conversation (the batch holding them
    closes first, and the two requests are never out at once); profile updates of one user
    or organization follow each other, so the latest one is the one that stays.
    """
    req = to_request(event, mapper)
    if req is None:
        return []
    after: tuple[str, Any] | None = None
    if req.after is not None:
        # behind the batch its messages went out in: keyed by the identity they were
        # recorded with (a scope's rating may not know the integration's user)
        after = (MESSAGES_PATH, batch_key(mapper.recorded_conv(req.after)))
    elif isinstance(event, Traits):
        body = req.body
        after = (req.path, body.get("externalUserId") or body.get("externalOrganizationId"))
    return [Part(req.path, encode_json(req.body), lane=after)]


def to_request(event: FeedbackEvent, mapper: Mapper) -> WireRequest | None:
    """The wire request for ``event``; None when it is sampled out with its conversation."""
    if isinstance(event, Rating):
        return _rating(event, mapper)
    if isinstance(event, OutcomeEvent):
        return _event(event, mapper)
    fields = dict(event.fields)
    for name in _MASKED_TRAITS:
        if fields.get(name) is not None:
            value = fields[name]
            value = to_jsonable(value, mapper.limits) if name == "properties" else str(value)
            fields[name] = mapper.masked(value)
    return WireRequest(f"/{event.kind}", fields)


def _text(value: str | None, mapper: Mapper) -> str | None:
    if value is None:
        return None
    masked = mapper.masked(truncate_text(value, mapper.limits.max_string))
    return masked if isinstance(masked, str) else str(masked)


def _rating(ev: Rating, mapper: Mapper) -> WireRequest | None:
    body: dict[str, Any] = {
        "productId": ev.product_id,
        "rating": ev.rating,
        "ratingMin": ev.rating_min,
        "ratingMax": ev.rating_max,
    }
    conv = ev.answer.conv if ev.answer is not None else None
    if conv is not None and not mapper.keep(conv):
        mapper.sampled_out += 1  # its conversation was not sent: neither is its rating
        return None
    if ev.answer is not None:
        mid = mapper.answer_id(ev.answer.conv, ev.answer.key) if ev.answer.key else None
        if mid is not None:
            body["externalMessageId"] = mid
        else:
            if ev.answer.key is not None:
                warn_once(
                    "rating-no-answer",
                    "gf_integrations: the rated call produced no recorded answer (it failed, "
                    "ended in tool calls, or its stream was not consumed yet); the rating "
                    "goes to its conversation %r instead",
                    ev.answer.conv.external_conversation_id,
                )
            body["externalConversationId"] = ev.answer.conv.external_conversation_id
    elif ev.external_message_id is not None:
        body["externalMessageId"] = ev.external_message_id
    else:
        body["externalConversationId"] = ev.external_conversation_id
    if ev.feedback is not None:
        body["feedback"] = _text(ev.feedback, mapper)
    body["ratedAt"] = iso_utc(ev.rated_at)
    return WireRequest("/ratings", body, after=conv)


def _event(ev: OutcomeEvent, mapper: Mapper) -> WireRequest | None:
    conv = ev.conv
    if conv is not None and not ev.force_sample and not mapper.keep(conv):
        mapper.sampled_out += 1
        return None
    conversation_id = conv.external_conversation_id if conv else ev.external_conversation_id
    user = ev.external_user_id or (conv.external_user_id if conv else None)
    org = ev.external_organization_id or (conv.external_organization_id if conv else None)
    event_at = iso_utc(ev.event_at)
    body: dict[str, Any] = {
        "eventType": ev.event_type,
        "productId": ev.product_id,
        "value": ev.value,
        "eventAt": event_at,
        # deterministic: a resend (retry, spool) is stored once by the server
        "insertId": ev.insert_id
        or stable_id(
            "event", ev.product_id, ev.event_type, ev.value, conversation_id, user, org, event_at
        ),
    }
    optional = {
        "externalConversationId": conversation_id,
        "externalUserId": user,
        "externalOrganizationId": org,
        "valueType": ev.value_type,
        "influence": ev.influence,
        "qualityImpactScore": ev.quality_impact_score,
        "sampleRate": ev.sample_rate,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    if ev.properties:
        body["properties"] = mapper.masked(to_jsonable(dict(ev.properties), mapper.limits))
    if ev.force_sample or (conv is not None and conv.force_sample):
        body["forceSample"] = True
    return WireRequest("/events", body, after=conv)

"""User feedback and business outcomes, tied to what the integrations recorded.

::

    import gf_integrations as gf

    answer = chain.invoke(question, config={"callbacks": [handler], "run_id": run_id})
    gf.rate(run_id, 1, rating_min=0, rating_max=1, feedback="spot on")
    gf.track_event("upgrade", 49.0, conversation=run_id, influence="positive")
    gf.identify_user("u1", name="Ada", email="ada@example.com", plan="pro")

A target is what the caller holds right after a call: a LangChain run id (or the
handler, for its last root run), an OpenAI response object or id, a LlamaIndex
``Response`` or agent result, a ``gf.conversation(...)`` scope (``None`` means the current
one: the whole conversation is rated), or explicit ids :class:`MessageId` /
:class:`ConversationId`. Each call validates its arguments (a ``ValueError`` or
``TypeError`` for a programming error), then only queues: it never blocks and never
raises for runtime conditions (an unknown target, no product id, a full queue are logged
and return False). Ratings and events travel through the same queue, retries, spool and
flush as messages, behind the messages of their conversation, and are sampled with it.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import math
import numbers
import weakref
from collections.abc import Mapping
from typing import Any

from .client import GreenflashClient, get_client
from .common.bounded import BoundedMap
from .common.once import warn_once
from .core.context import ConversationScope, current_scope, resolve_conv
from .core.feedback import FeedbackEvent, OutcomeEvent, Rating, Traits
from .core.targets import MAX_TARGETS, AnswerRef, ConversationId, MessageId, resolve_target
from .schema import EVENT_INFLUENCES, EVENT_VALUE_TYPES, parse_time

__all__ = [
    "ConversationId",
    "MessageId",
    "identify_organization",
    "identify_user",
    "rate",
    "track_event",
]

# per client: external id -> digest of the profile last queued ("sent once per change")
_profiles: weakref.WeakKeyDictionary[GreenflashClient, BoundedMap[str, str]] = (
    weakref.WeakKeyDictionary()
)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, decimal.Decimal)):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, not {value!r}")
    return number


def _moment(name: str, value: dt.datetime | dt.date | str | None) -> dt.datetime:
    if value is None:
        return dt.datetime.now(dt.timezone.utc)
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc)
    if isinstance(value, str):
        moment = parse_time(value)
        if moment is None:
            raise ValueError(f"{name} must be an ISO-8601 date or date-time, not {value!r}")
        return moment
    raise TypeError(f"{name} must be a datetime, a date or an ISO-8601 string")


def _optional_str(name: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a string, not {type(value).__name__}")
    return value


def _scope_answer(scope: ConversationScope, client: GreenflashClient) -> AnswerRef | None:
    if not scope.external_conversation_id:
        return None
    s = client.settings
    conv = resolve_conv(
        scope=scope,
        configured_user_id=s.external_user_id,
        configured_organization_id=s.external_organization_id,
        configured_product_id=s.product_id,
        fallback_conversation_id=scope.external_conversation_id,
    )
    return AnswerRef(conv)


def _answer(target: Any, client: GreenflashClient) -> AnswerRef | None:
    """What an integration (or a conversation scope) says ``target`` is about."""
    if target is None:
        scope = current_scope()
        return _scope_answer(scope, client) if scope is not None else None
    if isinstance(target, ConversationScope):
        return _scope_answer(target, client)
    return resolve_target(target)


def _product(answer: AnswerRef | None, client: GreenflashClient) -> str | None:
    if answer is not None and answer.conv.product_id:
        return answer.conv.product_id
    scope = current_scope()
    return (scope.product_id if scope is not None else None) or client.settings.product_id


def _queue(client: GreenflashClient, event: FeedbackEvent) -> bool:
    return client.active and client.record(event)


def _no_product(what: str) -> bool:
    warn_once(
        "no-product",
        "gf_integrations: %s needs a Greenflash product id (configure(product_id=...) or "
        "GREENFLASH_PRODUCT_ID); nothing was sent",
        what,
    )
    return False


def rate(
    target: Any,
    rating: float,
    *,
    rating_min: float,
    rating_max: float,
    feedback: str | None = None,
    rated_at: dt.datetime | dt.date | str | None = None,
    client: GreenflashClient | None = None,
) -> bool:
    """Rate a recorded answer (or a conversation): ``POST /ratings``, queued.

    Args:
        target: what the rating is about (see the module docstring): a LangChain run id or
            handler, an OpenAI response or its id, a LlamaIndex ``Response`` / agent
            result, a ``gf.conversation(...)`` scope (None: the current one),
            ``MessageId("...")`` or ``ConversationId("...")``.
        rating: the score, between ``rating_min`` and ``rating_max`` inclusive.
        rating_min: the low end of the scale (e.g. 0 for thumbs, 1 for stars).
        rating_max: the high end of the scale (e.g. 1 for thumbs, 5 for stars).
        feedback: optional text from the user (passes the mask hook).
        rated_at: when it was given (default: now). It keys the rating: a resend is
            stored once, a later rating of the same target replaces an earlier one.
        client: the client to send through (default: the configured one).

    Returns:
        True when queued; False when nothing will be sent (disabled client, unknown
        target, no product id, full queue), with a log line saying why.

    Raises:
        ValueError, TypeError: for invalid arguments (a scale with min >= max, a rating
            outside it, a malformed date).
    """
    score = _number("rating", rating)
    low, high = _number("rating_min", rating_min), _number("rating_max", rating_max)
    if low >= high:
        raise ValueError(f"rating_min ({rating_min}) must be less than rating_max ({rating_max})")
    if not low <= score <= high:
        raise ValueError(f"rating {rating} is outside [{rating_min}, {rating_max}]")
    when = _moment("rated_at", rated_at)
    text = _optional_str("feedback", feedback)
    gfc = client or get_client()
    if not gfc.active:
        return False
    message_id = conversation_id = None
    answer: AnswerRef | None = None
    if isinstance(target, MessageId):
        message_id = str(target)
    elif isinstance(target, ConversationId):
        conversation_id = str(target)
    else:
        answer = _answer(target, gfc)
        if answer is None:
            warn_once(
                f"unknown-target:{type(target).__name__}",
                "gf_integrations: gf.rate() does not know the %s it was given (not recorded "
                "by this process, or forgotten); use gf.MessageId(...) / "
                "gf.ConversationId(...) for explicit ids. Nothing was sent",
                type(target).__name__,
            )
            return False
    product = _product(answer, gfc)
    if not product:
        return _no_product("gf.rate()")
    event = Rating(
        product_id=product,
        rating=score,
        rating_min=low,
        rating_max=high,
        rated_at=when,
        feedback=text,
        answer=answer,
        external_message_id=message_id,
        external_conversation_id=conversation_id,
    )
    return _queue(gfc, event)


def _event_value(value: Any, value_type: str | None) -> tuple[str, str | None]:
    """The wire string of ``value`` and its inferred ``valueType`` (when not given)."""
    if isinstance(value, bool):
        return ("true" if value else "false"), value_type or "boolean"
    if isinstance(value, (numbers.Real, decimal.Decimal)):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"value must be finite, not {value!r}")
        return str(value), value_type or "numeric"
    if isinstance(value, str):
        return value, value_type
    raise TypeError(f"value must be a string, a number or a bool, not {type(value).__name__}")


def track_event(
    event_type: str,
    value: str | float | bool | decimal.Decimal,
    *,
    conversation: Any = None,
    external_user_id: str | None = None,
    external_organization_id: str | None = None,
    value_type: str | None = None,
    influence: str | None = None,
    quality_impact_score: float | None = None,
    properties: Mapping[str, Any] | None = None,
    insert_id: str | None = None,
    event_at: dt.datetime | dt.date | str | None = None,
    force_sample: bool = False,
    sample_rate: float | None = None,
    product_id: str | None = None,
    client: GreenflashClient | None = None,
) -> bool:
    """Track a business outcome (``POST /events``), queued, linked to a conversation.

    Args:
        event_type: what happened (``"signup"``, ``"purchase"``, ``"ticket_closed"``).
        value: its value; a number sets ``valueType="numeric"`` and a bool ``"boolean"``
            unless ``value_type`` says otherwise.
        conversation: the conversation it follows from, given like a :func:`rate` target
            (a run id, a response, a ``gf.conversation`` scope, ``ConversationId``);
            default: the current ``gf.conversation(...)``, if any. Its user and
            organization are used unless given here; the event is sampled with it.
        external_user_id: the user (default: the conversation's).
        external_organization_id: the organization (default: the conversation's).
        value_type: ``currency``, ``numeric``, ``text`` or ``boolean``.
        influence: ``positive``, ``negative`` or ``neutral``.
        quality_impact_score: -1.0 .. 1.0, overrides what ``influence`` implies.
        properties: extra context (safe JSON, passes the mask hook).
        insert_id: your idempotency key (default: derived from the fields and
            ``event_at``, so a resend is stored once).
        event_at: when it happened (default: now).
        force_sample: always keep it, whatever the sampling.
        sample_rate: server-side sampling of this event type (0..1).
        product_id: default: the conversation's, else the configured one.
        client: the client to send through (default: the configured one).

    Returns:
        True when queued; False when nothing will be sent (with a log line saying why).
    """
    if not isinstance(event_type, str) or not event_type:
        raise ValueError("event_type must be a non-empty string")
    text, vtype = _event_value(value, value_type)
    if vtype is not None and vtype not in EVENT_VALUE_TYPES:
        raise ValueError(f"value_type must be one of {EVENT_VALUE_TYPES}, not {vtype!r}")
    if influence is not None and influence not in EVENT_INFLUENCES:
        raise ValueError(f"influence must be one of {EVENT_INFLUENCES}, not {influence!r}")
    score = None
    if quality_impact_score is not None:
        score = _number("quality_impact_score", quality_impact_score)
        if not -1.0 <= score <= 1.0:
            raise ValueError("quality_impact_score must be between -1.0 and 1.0")
    rate_ = None
    if sample_rate is not None:
        rate_ = _number("sample_rate", sample_rate)
        if not 0.0 <= rate_ <= 1.0:
            raise ValueError("sample_rate must be between 0.0 and 1.0")
    if properties is not None and not isinstance(properties, Mapping):
        raise TypeError("properties must be a mapping")
    when = _moment("event_at", event_at)
    for name, given in (
        ("external_user_id", external_user_id),
        ("external_organization_id", external_organization_id),
        ("insert_id", insert_id),
        ("product_id", product_id),
    ):
        _optional_str(name, given)
    gfc = client or get_client()
    if not gfc.active:
        return False
    answer: AnswerRef | None = None
    explicit_conversation = None
    if isinstance(conversation, ConversationId):
        explicit_conversation = str(conversation)
    elif conversation is not None or current_scope() is not None:
        answer = _answer(conversation, gfc)
        if answer is None and conversation is not None:
            warn_once(
                f"unknown-conversation:{type(conversation).__name__}",
                "gf_integrations: gf.track_event() does not know the conversation of the %s "
                "it was given; the event is sent without a conversation",
                type(conversation).__name__,
            )
    product = product_id or _product(answer, gfc)
    if not product:
        return _no_product("gf.track_event()")
    event = OutcomeEvent(
        product_id=product,
        event_type=event_type,
        value=text,
        event_at=when,
        conv=answer.conv if answer is not None else None,
        external_conversation_id=explicit_conversation,
        external_user_id=external_user_id,
        external_organization_id=external_organization_id,
        value_type=vtype,
        influence=influence,
        quality_impact_score=score,
        properties=dict(properties) if properties else None,
        insert_id=insert_id,
        force_sample=bool(force_sample),
        sample_rate=rate_,
    )
    return _queue(gfc, event)


def _identify(
    client: GreenflashClient | None, kind: str, external_id: str, fields: dict[str, Any]
) -> bool:
    gfc = client or get_client()
    if not gfc.active:
        return False
    body = {k: v for k, v in fields.items() if v is not None}
    try:
        encoded = json.dumps(body, sort_keys=True, default=repr).encode("utf-8", "replace")
    except (TypeError, ValueError, RecursionError):
        encoded = repr(sorted(body.items(), key=lambda kv: kv[0])).encode("utf-8", "replace")
    digest = hashlib.sha1(encoded, usedforsecurity=False).hexdigest()
    sent = _profiles.get(gfc)
    if sent is None:
        sent = _profiles.setdefault(gfc, BoundedMap(MAX_TARGETS))
    key = f"{kind}\x1f{external_id}"
    if sent.get(key) == digest:
        return True  # unchanged since it was last queued: sent once per change
    if not _queue(gfc, Traits("users" if kind == "user" else "organizations", body)):
        return False
    sent.put(key, digest)
    return True


def identify_user(
    external_user_id: str,
    *,
    name: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    external_organization_id: str | None = None,
    anonymized: bool | None = None,
    properties: Mapping[str, Any] | None = None,
    client: GreenflashClient | None = None,
    **traits: Any,
) -> bool:
    """Create or update a user's profile (``POST /users``), queued once per change.

    ``name``, ``email``, ``phone`` and the properties (``properties`` plus any extra
    keyword, e.g. ``plan="pro"``) pass the mask hook before they leave the process.
    Returns True when queued or unchanged since the last call.
    """
    if not isinstance(external_user_id, str) or not external_user_id:
        raise ValueError("external_user_id must be a non-empty string")
    for field, given in (
        ("name", name),
        ("email", email),
        ("phone", phone),
        ("external_organization_id", external_organization_id),
    ):
        _optional_str(field, given)
    if properties is not None and not isinstance(properties, Mapping):
        raise TypeError("properties must be a mapping")
    props = {**(properties or {}), **traits}
    return _identify(
        client,
        "user",
        external_user_id,
        {
            "externalUserId": external_user_id,
            "name": name,
            "email": email,
            "phone": phone,
            "externalOrganizationId": external_organization_id,
            "anonymized": None if anonymized is None else bool(anonymized),
            "properties": props or None,
        },
    )


def identify_organization(
    external_organization_id: str,
    *,
    name: str | None = None,
    properties: Mapping[str, Any] | None = None,
    client: GreenflashClient | None = None,
    **traits: Any,
) -> bool:
    """Create or update an organization (``POST /organizations``), queued once per change.

    ``name`` and the properties (``properties`` plus any extra keyword) pass the mask hook.
    """
    if not isinstance(external_organization_id, str) or not external_organization_id:
        raise ValueError("external_organization_id must be a non-empty string")
    _optional_str("name", name)
    if properties is not None and not isinstance(properties, Mapping):
        raise TypeError("properties must be a mapping")
    props = {**(properties or {}), **traits}
    return _identify(
        client,
        "organization",
        external_organization_id,
        {
            "externalOrganizationId": external_organization_id,
            "name": name,
            "properties": props or None,
        },
    )

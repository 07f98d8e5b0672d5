"""Conformance of :mod:`gf_integrations.schema` with the official ``greenflash`` client.

The official client's TypedDicts (``greenflash.types``) are the authoritative field list.
These tests walk their annotations (nested Voice/VoiceCall/components included) and check
that our models accept exactly the same fields, under the same camelCase names, with the
same required keys and the same literal choices; that a request built with the official
types round-trips through our models to the same JSON keys; and that the official client,
pointed at a real loopback server, sends bodies our models accept unchanged.
"""

from __future__ import annotations

import datetime as dt
import typing
from collections.abc import Iterable
from typing import Any

import pytest
import typing_extensions as te
from pydantic import BaseModel, ValidationError

from gf_integrations import schema

greenflash = pytest.importorskip("greenflash")
from greenflash._utils import PropertyInfo, transform  # noqa: E402
from greenflash.types import create_message_response as gf_resp  # noqa: E402
from greenflash.types import event_create_params as gf_event  # noqa: E402
from greenflash.types import message_create_params as gf_req  # noqa: E402
from greenflash.types import message_item_param as gf_item  # noqa: E402
from greenflash.types import organization_create_params as gf_org  # noqa: E402
from greenflash.types import rating_log_params as gf_rating  # noqa: E402
from greenflash.types import system_prompt_param as gf_prompt  # noqa: E402
from greenflash.types import user_create_params as gf_user  # noqa: E402
from greenflash.types.component_input_param import ComponentInputParam  # noqa: E402

# (official TypedDict, our model)
PAIRS: list[tuple[Any, type[BaseModel]]] = [
    (gf_req.MessageCreateParams, schema.MessageCreateRequest),
    (gf_req.VoiceCall, schema.VoiceCall),
    (gf_req.VoiceCallLatency, schema.VoiceCallLatency),
    (gf_item.MessageItemParam, schema.MessageItem),
    (gf_item.Voice, schema.Voice),
    (gf_item.VoiceProsody, schema.VoiceProsody),
    (gf_prompt.SystemPromptObject, schema.SystemPromptObject),
    (ComponentInputParam, schema.Component),
    (gf_rating.RatingLogParams, schema.RatingLogRequest),
    (gf_event.EventCreateParams, schema.EventCreateRequest),
    (gf_user.UserCreateParams, schema.UserCreateRequest),
    (gf_org.OrganizationCreateParams, schema.OrganizationCreateRequest),
]
RESPONSE_PAIRS: list[tuple[Any, type[BaseModel]]] = [
    (gf_resp.CreateMessageResponse, schema.CreateMessageResponse),
    (gf_resp.Message, schema.MessageResult),
    (gf_resp.TemplateMatch, schema.TemplateMatch),
]


# typing.Required is 3.11+; on 3.10 only typing_extensions has it (never compare with None:
# a plain type's origin is None)
_REQUIRED = tuple({te.Required, getattr(typing, "Required", te.Required)})


def _unwrap(tp: Any) -> tuple[Any, str | None, bool]:
    """Strip Required/NotRequired/Annotated: (inner type, wire alias, required?)."""
    alias = None
    required = False
    while True:
        origin = te.get_origin(tp)
        if origin in _REQUIRED:
            required = True
            tp = te.get_args(tp)[0]
        elif origin is te.NotRequired:
            tp = te.get_args(tp)[0]
        elif origin is te.Annotated:
            for meta in tp.__metadata__:
                if isinstance(meta, PropertyInfo) and meta.alias:
                    alias = meta.alias
            tp = tp.__origin__
        else:
            return tp, alias, required


def official_fields(td: Any) -> dict[str, tuple[str, bool, Any]]:
    """python name -> (wire name, required, inner type) of an official TypedDict."""
    hints = te.get_type_hints(td, include_extras=True)
    out = {}
    for name, tp in hints.items():
        inner, alias, required = _unwrap(tp)
        out[name] = (alias or name, required or name in td.__required_keys__, inner)
    return out


def our_fields(model: type[BaseModel]) -> dict[str, tuple[str, bool, Any]]:
    return {
        name: (f.alias or name, f.is_required(), f.annotation)
        for name, f in model.model_fields.items()
    }


def literal_values(tp: Any) -> set[Any] | None:
    """The literal choices inside a (possibly Optional/Union) annotation."""
    if te.get_origin(tp) is te.Literal or te.get_origin(tp) is typing.Literal:
        return set(te.get_args(tp))
    values: set[Any] = set()
    for arg in te.get_args(tp):
        sub = literal_values(arg)
        if sub:
            values |= sub
    return values or None


@pytest.mark.parametrize(("official", "ours"), PAIRS, ids=lambda p: getattr(p, "__name__", ""))
def test_request_models_have_exactly_the_official_fields(official, ours):
    theirs = official_fields(official)
    mine = our_fields(ours)
    assert set(mine) == set(theirs), "python field names differ"
    for name, (wire, required, tp) in theirs.items():
        my_wire, my_required, my_tp = mine[name]
        assert my_wire == wire, f"{ours.__name__}.{name}: alias {my_wire} != {wire}"
        assert my_required == required, f"{ours.__name__}.{name}: required differs"
        assert literal_values(my_tp) == literal_values(tp), f"{ours.__name__}.{name}: literals"


@pytest.mark.parametrize(
    ("official", "ours"), RESPONSE_PAIRS, ids=lambda p: getattr(p, "__name__", "")
)
def test_response_models_have_the_official_fields(official, ours):
    theirs = {name: (f.alias or name) for name, f in official.model_fields.items()}
    mine = {name: (f.alias or name) for name, f in ours.model_fields.items()}
    assert mine == theirs


def test_feedback_literal_constants_match_the_official_client():
    event = official_fields(gf_event.EventCreateParams)
    assert set(schema.EVENT_INFLUENCES) == literal_values(event["influence"][2])
    assert set(schema.EVENT_VALUE_TYPES) == literal_values(event["value_type"][2])


@pytest.mark.parametrize(
    ("params_type", "model", "overrides"),
    [
        (
            gf_rating.RatingLogParams,
            schema.RatingLogRequest,
            {"rating": 4, "rating_min": 1, "rating_max": 5, "rated_at": dt.date(2026, 1, 2)},
        ),
        (
            gf_event.EventCreateParams,
            schema.EventCreateRequest,
            {
                "quality_impact_score": -0.5,
                "event_at": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
            },
        ),
        (gf_user.UserCreateParams, schema.UserCreateRequest, {}),
        (gf_org.OrganizationCreateParams, schema.OrganizationCreateRequest, {}),
    ],
    ids=["ratings", "events", "users", "organizations"],
)
def test_full_official_feedback_requests_round_trip(params_type, model, overrides):
    params = {**sample(params_type), **overrides}
    wire = transform(params, params_type)  # the official client's JSON, every field set
    assert schema.dump_request(model.model_validate(wire)) == wire


def test_literal_constants_match_the_official_client():
    item = official_fields(gf_item.MessageItemParam)
    assert set(schema.ROLES) == literal_values(item["role"][2])
    assert set(schema.MESSAGE_TYPES) == literal_values(item["message_type"][2])
    comp = official_fields(ComponentInputParam)
    assert set(schema.COMPONENT_TYPES) == literal_values(comp["type"][2])
    assert set(schema.COMPONENT_SOURCES) == literal_values(comp["source"][2])


# -- a full request, built from the official types ------------------------------------------


def sample(tp: Any) -> Any:
    """A valid sample value for an official annotation (every optional field filled)."""
    tp, _, _ = _unwrap(tp)
    origin = te.get_origin(tp)
    if te.is_typeddict(tp):
        return {name: sample(t) for name, t in te.get_type_hints(tp, include_extras=True).items()}
    if origin in (te.Literal, typing.Literal):
        return te.get_args(tp)[0]
    if origin is typing.Union:
        args = [a for a in te.get_args(tp) if a is not type(None)]
        typed = [a for a in args if te.is_typeddict(a)]
        if typed:  # systemPrompt: str | object -> the object, to cover its fields
            return sample(typed[0])
        if dt.date in args or str in args:
            return "2025-01-02T03:04:05Z" if dt.date in args else "text"
        return sample(args[0])
    if origin in (list, Iterable, typing.Iterable) or (
        origin is not None
        and origin.__name__
        in (
            "Iterable",
            "list",
        )
    ):
        return [sample(te.get_args(tp)[0])]
    if origin is dict:
        return {"key": "value"}
    return {str: "text", int: 7, float: 0.5, bool: True}[tp]


def full_params() -> dict[str, Any]:
    """Every field of MessageCreateParams, nested ones too, with the API's rules kept."""
    params = sample(gf_req.MessageCreateParams)
    base = params["messages"][0]
    with_role = dict(base)
    del with_role["message_type"], with_role["parent_message_id"]
    with_type = dict(base, message_type="tool_call")
    del with_type["role"], with_type["parent_external_message_id"]
    params["messages"] = [with_role, with_type]
    return params


def keys_tree(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: keys_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [keys_tree(v) for v in value]
    return None


@pytest.mark.parametrize("prompt", ["components", "content", "string"])
def test_a_full_official_request_round_trips_to_the_same_json_keys(prompt):
    params = full_params()
    if prompt == "components":
        del params["system_prompt"]["content"]
    elif prompt == "content":
        del params["system_prompt"]["components"]
    else:
        params["system_prompt"] = "You are helpful."
    wire = transform(params, gf_req.MessageCreateParams)  # the official client's JSON
    model = schema.MessageCreateRequest.model_validate(wire)
    ours = schema.dump_request(model)
    assert keys_tree(ours) == keys_tree(wire)
    assert ours == wire
    # and from python names: the same wire JSON
    assert schema.dump_request(schema.MessageCreateRequest(**model.model_dump())) == wire


def test_the_official_client_sends_bodies_our_models_accept(capture_server):
    from greenflash import Greenflash

    params = full_params()
    del params["system_prompt"]["content"]
    client = Greenflash(api_key="k", base_url=capture_server.base_url, max_retries=0)
    response = client.messages.create(**params)
    body = capture_server.requests[-1]
    model = schema.MessageCreateRequest.model_validate(body)
    assert schema.dump_request(model) == body
    assert response.success is True
    # and our response model reads what the official one reads
    ours = schema.CreateMessageResponse.model_validate(response.model_dump(by_alias=True))
    assert [m.external_message_id for m in ours.messages] == [
        m.external_message_id for m in response.messages
    ]


# -- the API's rules, with clear errors ------------------------------------------------------


def msg(**fields: Any) -> dict[str, Any]:
    return {"content": "hi", **fields}


def req(**fields: Any) -> dict[str, Any]:
    body = {
        "externalUserId": "u1",
        "externalConversationId": "c1",
        "messages": [msg(role="user")],
    }
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


def error_text(data: dict[str, Any], model: type[BaseModel] = schema.MessageCreateRequest) -> str:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    return str(info.value)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (msg(), "exactly one of role or messageType"),
        (msg(role="user", messageType="user_message"), "exactly one of role or messageType"),
        (msg(messageType="tool_call"), "toolName is required"),
        (
            msg(role="user", parentExternalMessageId="a", parentMessageId="b"),
            "at most one of parentExternalMessageId and parentMessageId",
        ),
        (msg(role="robot"), "role"),
        (msg(messageType="banana"), "messageType"),
        (msg(role="user", input="a string"), "input"),
        (msg(role="user", output=["list"]), "output"),
        (msg(role="user", properties="x"), "properties"),
        (msg(role="user", unknownField=1), "unknownField"),
    ],
)
def test_message_rules(message, expected):
    assert expected in error_text(message, schema.MessageItem)


def test_message_rules_accept_valid_shapes():
    schema.MessageItem.model_validate(msg(messageType="tool_call", toolName="search"))
    schema.MessageItem.model_validate(msg(role="assistant", parentMessageId="p"))
    schema.MessageItem.model_validate(msg(role="user", input={}, output={"a": 1}, properties={}))


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_sample_rate_must_be_within_0_and_1(rate):
    assert "sampleRate" in error_text(req(sampleRate=rate))


@pytest.mark.parametrize("rate", [0, 0.25, 1])
def test_sample_rate_bounds_are_inclusive(rate):
    schema.MessageCreateRequest.model_validate(req(sampleRate=rate))


def test_one_conversation_key_is_required():
    text = error_text(req(externalConversationId=None))
    assert "one of conversationId, externalConversationId or productId" in text
    for key in ("conversationId", "externalConversationId", "productId"):
        body = req(externalConversationId=None)
        body[key] = "x"
        schema.MessageCreateRequest.model_validate(body)


def test_request_needs_a_user_and_messages():
    assert "externalUserId" in error_text(req(externalUserId=None))
    assert "messages" in error_text(req(messages=[]))
    assert "properties" in error_text(req(properties="nope"))


def test_system_prompt_object_content_xor_components():
    both = {"content": "a", "components": [{"content": "b"}]}
    assert "either content or components, not both" in error_text(req(systemPrompt=both))
    assert "needs content, components" in error_text(req(systemPrompt={"variables": {"a": "b"}}))
    for ok in (
        "plain string",
        {"content": "a"},
        {"components": [{"content": "Hi {{name}}", "type": "system"}], "variables": {"name": "x"}},
        {"promptId": "p1"},
    ):
        schema.MessageCreateRequest.model_validate(req(systemPrompt=ok))
    assert "content" in error_text(req(systemPrompt={"components": [{"name": "no content"}]}))


def test_dump_request_omits_none_and_uses_camel_case():
    model = schema.MessageCreateRequest(
        external_user_id="u",
        external_conversation_id="c",
        messages=[schema.MessageItem(message_type="tool_call", tool_name="t", content=None)],
    )
    assert schema.dump_request(model) == {
        "externalUserId": "u",
        "externalConversationId": "c",
        "messages": [{"messageType": "tool_call", "toolName": "t"}],
    }

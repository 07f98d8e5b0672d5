"""The collector's feedback endpoints over real HTTP: ``/ratings``, ``/events``, ``/users``,
``/organizations``, driven by the official ``greenflash`` client where it can say it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest

pytest.importorskip("starlette")

from gf_integrations.collector import start_collector
from gf_integrations.core.ids import sample_fraction

greenflash = pytest.importorskip("greenflash")


def post(col: Any, path: str, body: Any) -> httpx.Response:
    if isinstance(body, (bytes, str)):
        return httpx.post(f"{col.base_url}/{path}", content=body, timeout=30)
    return httpx.post(f"{col.base_url}/{path}", json=body, timeout=30)


def official(col: Any) -> Any:
    return greenflash.Greenflash(api_key="anything", base_url=col.base_url, max_retries=0)


def seed(col: Any, conv: str = "c1", product: str = "p1") -> dict[str, Any]:
    """A two-message conversation (user question, assistant answer ``a-<conv>``)."""
    r = post(
        col,
        "messages",
        {
            "externalUserId": "u1",
            "externalConversationId": conv,
            "productId": product,
            "messages": [
                {"role": "user", "content": "hi", "externalMessageId": f"q-{conv}"},
                {"role": "assistant", "content": "hello", "externalMessageId": f"a-{conv}"},
            ],
        },
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


# -- ratings -----------------------------------------------------------------------------


def test_official_client_rates_messages_and_conversations_every_way(collector):
    created = seed(collector)
    client = official(collector)
    answer_id = created["messages"][1]["messageId"]
    ok = client.ratings.log(
        product_id="p1",
        external_message_id="a-c1",
        rating=4,
        rating_min=1,
        rating_max=5,
        feedback="clear and short",
        rated_at="2026-01-02T03:04:05Z",
    )
    assert ok.success is True
    client.ratings.log(
        product_id="p1", external_conversation_id="c1", rating=0, rating_min=0, rating_max=1
    )
    ratings = collector.ratings("c1", product_id="p1")
    # oldest first: the message's ratedAt was given (January), the conversation's is now
    assert [(r["externalMessageId"], r["rating"], r["feedback"]) for r in ratings] == [
        ("a-c1", 4.0, "clear and short"),
        (None, 0.0, None),
    ]
    by_message = next(r for r in ratings if r["messageId"] == answer_id)
    assert (by_message["ratingMin"], by_message["ratingMax"]) == (1.0, 5.0)
    assert by_message["ratedAt"] == "2026-01-02T03:04:05.000000Z"
    # the same targets by Greenflash ids, and a date-only ratedAt (the client's date type)
    client.ratings.log(
        product_id="p1",
        message_id=answer_id,
        rating=5,
        rating_min=1,
        rating_max=5,
        rated_at=dt.date(2026, 2, 1),
    )
    client.ratings.log(
        product_id="p1",
        conversation_id=created["conversationId"],
        rating=1,
        rating_min=0,
        rating_max=1,
    )
    ratings = collector.ratings("c1", product_id="p1")
    assert len(ratings) == 2  # one per target: the later ones replaced the earlier ones
    assert {r["rating"] for r in ratings} == {5.0, 1.0}
    assert next(r for r in ratings if r["messageId"])["ratedAt"] == "2026-02-01T00:00:00.000000Z"


def test_a_resent_rating_is_stored_once_and_an_older_one_never_wins(collector):
    seed(collector)
    rating = {
        "productId": "p1",
        "externalMessageId": "a-c1",
        "rating": 1,
        "ratingMin": 0,
        "ratingMax": 1,
        "feedback": "good",
        "ratedAt": "2026-01-01T10:00:00Z",
    }
    for _ in range(3):
        assert post(collector, "ratings", rating).json() == {"success": True}
    assert len(collector.ratings("c1")) == 1
    newer = dict(rating, rating=0, feedback="changed my mind", ratedAt="2026-01-01T11:00:00Z")
    post(collector, "ratings", newer)
    post(collector, "ratings", rating)  # a late retry of the first one
    (stored,) = collector.ratings("c1")
    assert (stored["rating"], stored["feedback"]) == (0.0, "changed my mind")
    assert collector.counts()["ratings"] == 1


@pytest.mark.parametrize(
    ("change", "path", "text"),
    [
        ({"externalMessageId": None}, "(body)", "one of conversationId, externalConversationId"),
        ({"rating": 6}, "(body)", "between ratingMin and ratingMax"),
        ({"ratingMin": 5, "ratingMax": 5}, "(body)", "ratingMin must be less than ratingMax"),
        ({"ratedAt": "yesterday"}, "(body)", "ratedAt: not an ISO-8601"),
        ({"productId": None}, "productId", "Field required"),
        ({"rating": "five"}, "rating", "valid number"),
        ({"stars": 5}, "stars", "Extra inputs"),
    ],
)
def test_invalid_ratings_are_400_with_details_and_store_nothing(collector, change, path, text):
    seed(collector)
    body = {"productId": "p1", "externalMessageId": "a-c1", "rating": 3}
    body.update({"ratingMin": 1, "ratingMax": 5})
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    r = post(collector, "ratings", body)
    assert r.status_code == 400, r.text
    data = r.json()
    assert data["success"] is False
    assert any(d["path"] == path and text in d["message"] for d in data["details"]), data
    assert collector.counts()["ratings"] == 0


def test_unknown_targets_are_400_naming_them_like_an_unknown_parent(collector):
    seed(collector)
    base = {"rating": 1, "ratingMin": 0, "ratingMax": 1}
    cases = [
        ({"productId": "p1", "externalMessageId": "nope"}, "externalMessageId", "'nope'"),
        ({"productId": "p2", "externalMessageId": "a-c1"}, "externalMessageId", "'a-c1'"),
        ({"productId": "p1", "messageId": "nope"}, "messageId", "'nope'"),
        ({"productId": "p1", "externalConversationId": "zz"}, "externalConversationId", "'zz'"),
        ({"productId": "p1", "conversationId": "zz"}, "conversationId", "'zz'"),
    ]
    for target, path, name in cases:
        r = post(collector, "ratings", {**base, **target})
        assert r.status_code == 400, (target, r.text)
        (detail,) = r.json()["details"]
        assert detail["path"] == path
        assert name in detail["message"]
    with pytest.raises(greenflash.BadRequestError):
        official(collector).ratings.log(
            product_id="p1", external_message_id="nope", rating=1, rating_min=0, rating_max=1
        )
    assert collector.counts()["ratings"] == 0


def test_malformed_bodies_get_the_messages_error_shape(collector):
    for path in ("ratings", "events", "users", "organizations"):
        for raw in (b"{", b"[]", b"\xff\xfe", b"[" * 100_000):
            r = post(collector, path, raw)
            assert r.status_code == 400, (path, raw[:5])
            body = r.json()
            assert body["success"] is False
            assert body["details"][0]["path"] == "(body)"


def test_the_api_key_guards_the_new_endpoints_too():
    with start_collector(api_key="sekret") as col:
        for path in ("ratings", "events", "users", "organizations"):
            r = httpx.post(f"{col.base_url}/{path}", json={}, timeout=10)
            assert r.status_code == 401
            assert r.json()["success"] is False
        client = greenflash.Greenflash(api_key="sekret", base_url=col.base_url, max_retries=0)
        assert client.organizations.create(external_organization_id="acme").success is True


# -- events ------------------------------------------------------------------------------


def test_official_client_event_with_every_field_is_stored_once_per_insert_id(collector):
    seed(collector)
    client = official(collector)
    params: dict[str, Any] = {
        "event_type": "upgrade",
        "product_id": "p1",
        "value": "49.00",
        "value_type": "currency",
        "external_conversation_id": "c1",
        "external_user_id": "u1",
        "external_organization_id": "acme",
        "influence": "positive",
        "quality_impact_score": 0.8,
        "properties": {"plan": "pro"},
        "insert_id": "order-77",
        "event_at": "2026-01-05T12:00:00Z",
        "force_sample": True,
        "sample_rate": 0.5,
    }
    first = client.events.create(**params)
    again = client.events.create(**params)
    assert first.success is True
    assert first.event_id == again.event_id
    (event,) = collector.events("c1", product_id="p1")
    assert event == {
        "id": first.event_id,
        "insertId": "order-77",
        "eventType": "upgrade",
        "value": "49.00",
        "valueType": "currency",
        "influence": "positive",
        "qualityImpactScore": 0.8,
        "externalUserId": "u1",
        "externalOrganizationId": "acme",
        "properties": {"plan": "pro"},
        "eventAt": "2026-01-05T12:00:00.000000Z",
    }
    assert collector.organization("acme") is not None  # created on first sight
    # by Greenflash ids: the conversation, the user, the organization must exist
    conv_id = collector.conversation("c1", product_id="p1")["id"]
    user_id = collector.user("u1")["id"]
    org_id = collector.organization("acme")["id"]
    client.events.create(
        event_type="csat",
        product_id="p1",
        value="5",
        conversation_id=conv_id,
        user_id=user_id,
        organization_id=org_id,
    )
    assert [e["eventType"] for e in collector.events("c1", product_id="p1")] == [
        "upgrade",
        "csat",
    ]
    for field in ("conversationId", "userId", "organizationId"):
        r = post(
            collector, "events", {"eventType": "x", "productId": "p1", "value": "1", field: "zz"}
        )
        assert r.status_code == 400
        assert r.json()["details"][0]["path"] == field


def test_an_event_for_a_conversation_not_yet_seen_joins_it_when_it_comes(collector):
    body = {"eventType": "signup", "productId": "p1", "value": "true", "valueType": "boolean"}
    r = post(collector, "events", {**body, "externalConversationId": "later"})
    assert r.status_code == 200
    seed(collector, "later")
    assert [e["eventType"] for e in collector.events("later", product_id="p1")] == ["signup"]


def test_event_sampling_is_deterministic_by_type_and_organization(collector):
    kept = dropped = None
    for n in range(50):
        event_type = f"type-{n}"
        if sample_fraction(f"{event_type}\x1facme") < 0.5:
            kept = kept or event_type
        else:
            dropped = dropped or event_type
    assert kept
    assert dropped
    base = {"productId": "p1", "value": "1", "externalOrganizationId": "acme", "sampleRate": 0.5}
    for event_type in (kept, dropped):
        r = post(collector, "events", {**base, "eventType": event_type})
        assert r.status_code == 200
        assert r.json()["eventId"]
    post(collector, "events", {**base, "eventType": dropped, "forceSample": True})
    assert collector.counts()["events"] == 2  # kept + the forced one


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"eventType": ""}, "eventType"),
        ({"value": 5}, "value"),
        ({"influence": "great"}, "influence"),
        ({"valueType": "money"}, "valueType"),
        ({"qualityImpactScore": 1.5}, "qualityImpactScore"),
        ({"sampleRate": 2}, "sampleRate"),
        ({"eventAt": "soon"}, "(body)"),
        ({"properties": "x"}, "properties"),
    ],
)
def test_invalid_events_are_400_naming_the_field(collector, change, path):
    r = post(collector, "events", {"eventType": "x", "productId": "p1", "value": "1", **change})
    assert r.status_code == 400
    assert path in [d["path"] for d in r.json()["details"]]
    assert collector.counts()["events"] == 0


# -- users and organizations ------------------------------------------------------------


def test_official_client_users_and_organizations_create_then_update(collector):
    client = official(collector)
    org = client.organizations.create(
        external_organization_id="acme", name="Acme", properties={"tier": "gold"}
    )
    assert org.organization.external_id == "acme"
    assert org.organization.name == "Acme"
    org2 = client.organizations.create(external_organization_id="acme", properties={"seats": 5})
    assert org2.organization.id == org.organization.id
    assert org2.organization.name == "Acme"  # kept: not given this time
    assert org2.organization.properties == {"tier": "gold", "seats": 5}

    user = client.users.create(
        external_user_id="u1",
        name="Ada Lovelace",
        email="ada@example.com",
        phone="+44 20 7946 0000",
        external_organization_id="acme",
        properties={"plan": "pro"},
    )
    p = user.participant
    assert (p.external_id, p.name, p.email, p.phone) == (
        "u1",
        "Ada Lovelace",
        "ada@example.com",
        "+44 20 7946 0000",
    )
    assert (p.external_organization_id, p.organization_id) == ("acme", org.organization.id)
    assert p.anonymized is False
    assert p.properties == {"plan": "pro"}
    again = client.users.create(external_user_id="u1", properties={"seats": 2}).participant
    assert again.name == "Ada Lovelace"
    assert again.properties == {"plan": "pro", "seats": 2}
    gone = client.users.create(external_user_id="u1", anonymized=True).participant
    assert gone.anonymized is True
    assert (gone.name, gone.email, gone.phone) == (None, None, None)
    # a user first seen in /messages gets a profile on /users, and keeps its conversations
    seed(collector)
    client.users.create(external_user_id="u1", anonymized=False, name="Ada")
    assert collector.user("u1")["name"] == "Ada"
    assert collector.conversations(external_user_id="u1")
    r = post(collector, "users", {"externalUserId": "u2", "organizationId": "zz"})
    assert r.status_code == 400
    assert r.json()["details"][0]["path"] == "organizationId"
    assert post(collector, "users", {"externalUserId": ""}).status_code == 400
    assert post(collector, "organizations", {"name": "no id"}).status_code == 400


def test_conversation_api_carries_ratings_and_events(collector):
    seed(collector)
    post(
        collector,
        "ratings",
        {
            "productId": "p1",
            "externalMessageId": "a-c1",
            "rating": 1,
            "ratingMin": 0,
            "ratingMax": 1,
        },
    )
    post(
        collector,
        "events",
        {"eventType": "x", "productId": "p1", "value": "1", "externalConversationId": "c1"},
    )
    conv_id = collector.conversation("c1", product_id="p1")["id"]
    data = httpx.get(f"{collector.base_url}/conversations/{conv_id}", timeout=10).json()
    assert [r["externalMessageId"] for r in data["ratings"]] == ["a-c1"]
    assert [e["eventType"] for e in data["events"]] == ["x"]

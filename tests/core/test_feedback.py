"""gf.rate / gf.track_event / gf.identify_*: from what the caller holds right after a
call to what a real collector (or loopback server) stored, through the same uploader as
the messages. Without a framework: what a framework's run or response object rates is in
tests/<integration>/test_feedback_<integration>.py."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette")

import gf_integrations as gf
from helpers.feedback import PRODUCT, default_client, rated


@pytest.fixture
def client(collector: Any) -> Iterator[gf.GreenflashClient]:
    with default_client(collector) as c:
        yield c


# -- scopes, explicit ids, events, profiles ----------------------------------------------


def test_conversation_scope_and_explicit_ids(client, collector):
    with gf.conversation("scoped", external_user_id="u3") as scope:
        client.record(_user_turn(scope, "hi", "m-hi"))
        assert gf.rate(None, 4, rating_min=1, rating_max=5)  # the current conversation
    assert gf.rate(scope, 5, rating_min=1, rating_max=5, feedback="great chat")
    # explicit ids name things recorded earlier: nothing to wait for, so flush first here
    assert client.flush(10)
    assert gf.rate(gf.MessageId("m-hi"), 1, rating_min=0, rating_max=1)
    assert client.flush(10)
    assert gf.rate(gf.ConversationId("scoped"), 3, rating_min=1, rating_max=5)
    assert client.flush(10)
    assert sorted(rated(collector, "scoped"), key=str) == [
        ("hi", 1.0, None),
        (None, 3.0, None),  # one rating per target: the latest of the three
    ]


def _user_turn(scope: Any, text: str, mid: str) -> Any:
    from gf_integrations.core.events import RawMessage

    conv = gf.get_client().resolve()
    return RawMessage(conv, mid, {"role": "user", "content": text, "external_message_id": mid})


def test_identify_is_sent_once_per_change_and_masked(make_client, capture_server):
    c = make_client(product_id=PRODUCT, mask="pii", sender="thread")
    assert gf.identify_user("u1", name="Ada", email="ada@example.com", plan="pro", client=c)
    assert gf.identify_user("u1", name="Ada", email="ada@example.com", plan="pro", client=c)
    assert gf.identify_user("u1", name="Ada", email="ada@example.com", plan="team", client=c)
    assert gf.identify_organization("acme", name="Acme", seats=5, client=c)
    assert gf.identify_organization("acme", name="Acme", seats=5, client=c)
    assert c.flush(10)
    assert capture_server.wait_for(lambda s: len(s.requests) == 3)
    users = [b for b in capture_server.requests if "externalUserId" in b]
    assert [u["properties"] for u in users] == [{"plan": "pro"}, {"plan": "team"}]
    assert {u["email"] for u in users} == {"[REDACTED_EMAIL]"}
    assert users[0]["name"] == "Ada"
    orgs = [b for b in capture_server.requests if "externalUserId" not in b]
    assert orgs == [{"externalOrganizationId": "acme", "name": "Acme", "properties": {"seats": 5}}]


# -- delivery: order, retries, sampling, never blocking, clear errors --------------------


def test_a_rating_follows_its_messages_and_a_retry_resends_the_same_body(
    make_client, capture_server
):
    from gf_integrations.core.events import LLMCall
    from helpers.capture_server import Reply

    c = make_client(product_id=PRODUCT, flush_interval=5.0, sender="thread")
    capture_server.script = [Reply(503), Reply(200), Reply(500), Reply(200)]
    conv = c.resolve(defaults=None, fallback_conversation_id="ordered")
    c.record(
        LLMCall(
            conv,
            "k1",
            messages=[{"role": "user", "content": "q"}],
            reply={"role": "assistant", "content": "a"},
        )
    )
    from gf_integrations.core.feedback import Rating
    from gf_integrations.core.targets import AnswerRef

    now = dt.datetime.now(dt.timezone.utc)
    rating = Rating(PRODUCT, 1.0, 0.0, 1.0, now, answer=AnswerRef(conv, "k1"))
    assert c.record(rating)
    assert c.flush(20)
    assert capture_server.wait_for(lambda s: len(s.requests) == 2)
    kinds = ["messages" if "messages" in b else "rating" for b in capture_server.attempts]
    assert kinds == ["messages", "messages", "rating", "rating"]
    assert capture_server.attempts[2] == capture_server.attempts[3]
    (messages_body, rating_body) = capture_server.requests
    assert rating_body["externalMessageId"] == messages_body["messages"][1]["externalMessageId"]


def test_a_conversation_rating_follows_messages_recorded_under_another_user(
    make_client, capture_server
):
    # The README's LlamaIndex case: the instrumentor records as "u3", while the
    # gf.conversation scope the caller rates knows no user. The rating must still wait
    # for the conversation's messages (it would be a 400 "unknown conversation" first).
    from gf_integrations.core.context import IdentityDefaults
    from gf_integrations.core.events import LLMCall
    from gf_integrations.core.feedback import Rating
    from gf_integrations.core.targets import AnswerRef
    from helpers.capture_server import Reply

    c = make_client(product_id=PRODUCT, flush_interval=5.0, sender="thread")
    capture_server.script = [Reply(503), Reply(200), Reply(200)]
    recorded = c.resolve(
        defaults=IdentityDefaults(external_conversation_id="scoped", external_user_id="u3")
    )
    c.record(
        LLMCall(
            recorded,
            "k1",
            messages=[{"role": "user", "content": "q"}],
            reply={"role": "assistant", "content": "a"},
        )
    )
    with gf.conversation("scoped") as scope:
        scope_conv = c.resolve(defaults=None, fallback_conversation_id="unused")
    assert scope_conv.external_user_id != recorded.external_user_id
    assert scope_conv.key == recorded.key
    now = dt.datetime.now(dt.timezone.utc)
    assert c.record(Rating(PRODUCT, 4.0, 1.0, 5.0, now, answer=AnswerRef(scope_conv)))
    assert scope is not None
    assert c.flush(20)
    kinds = ["messages" if "messages" in b else "rating" for b in capture_server.attempts]
    assert kinds == ["messages", "messages", "rating"]
    assert capture_server.requests[-1]["externalConversationId"] == "scoped"


def test_rate_only_queues_even_while_the_server_hangs(make_client, capture_server):
    from helpers.capture_server import Reply

    c = make_client(product_id=PRODUCT, sender="thread")
    capture_server.default = Reply(delay=30)  # every request hangs until released
    for n in range(50):
        assert gf.rate(gf.ConversationId(f"c{n}"), 1, rating_min=0, rating_max=1, client=c)
    assert c.stats()["queued"] == 50  # all queued while nothing was answered
    assert capture_server.requests == []
    capture_server.release.set()
    capture_server.default = Reply()
    assert c.flush(10)


def test_invalid_arguments_raise_and_runtime_conditions_are_logged(client, caplog):
    with pytest.raises(ValueError, match="rating_min"):
        gf.rate(gf.MessageId("m"), 1, rating_min=1, rating_max=1)
    with pytest.raises(ValueError, match="outside"):
        gf.rate(gf.MessageId("m"), 6, rating_min=1, rating_max=5)
    with pytest.raises(TypeError, match="rating must be a number"):
        gf.rate(gf.MessageId("m"), "5", rating_min=1, rating_max=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        gf.rate(gf.MessageId("m"), float("nan"), rating_min=0, rating_max=1)
    with pytest.raises(ValueError, match="ISO-8601"):
        gf.rate(gf.MessageId("m"), 1, rating_min=0, rating_max=1, rated_at="yesterday")
    with pytest.raises(ValueError, match="influence"):
        gf.track_event("x", 1, influence="great")
    with pytest.raises(ValueError, match="quality_impact_score"):
        gf.track_event("x", 1, quality_impact_score=2)
    with pytest.raises(TypeError, match="value"):
        gf.track_event("x", [1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="external_user_id"):
        gf.identify_user("")
    with caplog.at_level(logging.WARNING, logger="gf_integrations"):
        assert gf.rate(object(), 1, rating_min=0, rating_max=1) is False
        assert gf.rate(uuid.uuid4(), 1, rating_min=0, rating_max=1) is False
        assert gf.rate(None, 1, rating_min=0, rating_max=1) is False  # no current scope
    assert "does not know the object" in caplog.text
    assert "does not know the UUID" in caplog.text


def test_without_a_product_id_nothing_is_sent_and_it_says_so(make_client, caplog):
    c = make_client(sender="thread")
    with caplog.at_level(logging.WARNING, logger="gf_integrations"):
        assert gf.rate(gf.MessageId("m"), 1, rating_min=0, rating_max=1, client=c) is False
        assert gf.track_event("x", 1, client=c) is False
    assert "needs a Greenflash product id" in caplog.text
    assert c.stats()["queued"] == 0

"""Spool now, resend now: the uploader's two calls for a process that a serverless platform
freezes between invocations (docs/DESIGN.md section 6b), against a REAL loopback server.

``spool_pending()`` writes what is not delivered yet (queued, batched, in flight) to the
spool without shutting down; ``resend_spool()`` sends it again when the next invocation
begins. ``gf_integrations.faas`` calls them through the client.
"""

from __future__ import annotations

import json
import stat

import pytest

from gf_integrations.core.context import Conv
from gf_integrations.core.events import UserInput
from gf_integrations.core.ids import stable_id
from helpers.capture_server import Reply
from helpers.servers import wait_until

FAST = {"max_backoff": 0.05, "retry_budget": 10.0, "request_timeout": 30.0}


def ids_of(messages: list[dict]) -> list[str]:
    return [m["externalMessageId"] for m in messages]


@pytest.mark.parametrize("sender", ["thread", "process"])
def test_spool_pending_takes_queued_and_in_flight_work_and_keeps_running(
    make_client, capture_server, tmp_path, sender
):
    capture_server.default = Reply(503, delay=30)  # held until the test releases it
    client = make_client(spool_dir=str(tmp_path), sender=sender, **FAST)
    c = Conv("c1", "u1")
    client.record(UserInput(c, "k1", "in flight"))
    assert client.flush(0.01) is False  # urged out: the server now holds it
    assert capture_server.wait_for(lambda s: len(s.attempts) == 1, 10)
    client.record(UserInput(c, "k2", "queued behind it"))

    assert client.spool_pending(timeout=5) == 2
    assert client.stats()["spooled"] == 2
    files = sorted(tmp_path.glob("*.json"))
    assert len(files) == 2  # the request in flight, then the batch behind it
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    assert [json.loads(f.read_bytes())["messages"][0]["content"] for f in files] == [
        "in flight",
        "queued behind it",
    ]
    # nothing is pending any more: a flush does not wait for the held request
    assert client.flush(1.0) is True

    # the next invocation: the server answers again, the spool is resent in order
    capture_server.default = Reply()
    assert client.resend_spool() is True
    assert client.flush(10) is True
    expected = [stable_id(c.key, "user", k) for k in ("k1", "k2")]
    assert ids_of(capture_server.messages) == expected
    assert client.stats()["unspooled"] == 2
    assert list(tmp_path.glob("*.json*")) == []

    # the held request's late answer changes nothing; the uploader goes on as before
    capture_server.release.set()
    assert capture_server.wait_for(lambda s: len(s.attempts) == 3, 10)
    client.record(UserInput(c, "k3", "after"))
    assert client.flush(10) is True
    assert ids_of(capture_server.messages) == [*expected, stable_id(c.key, "user", "k3")]
    stats = client.stats()
    assert (stats["sent"], stats["spooled"], stats["dropped"]) == (3, 2, 0)


def test_spool_pending_without_a_spool_keeps_the_work_in_memory(make_client, capture_server):
    capture_server.script = [Reply(503)]
    client = make_client(**FAST)
    c = Conv("c1", "u1")
    client.record(UserInput(c, "k1", "kept"))
    assert client.spool_pending(timeout=1) == 0
    assert client.flush(10) is True
    assert ids_of(capture_server.messages) == [stable_id(c.key, "user", "k1")]
    assert client.stats()["dropped"] == 0


def test_resend_spool_with_nothing_spooled_is_a_no_op(make_client, capture_server, tmp_path):
    client = make_client(spool_dir=str(tmp_path / "spool"))
    assert client.resend_spool() is False
    assert client.spool_pending() == 0  # nothing pending
    assert make_client().resend_spool() is False  # no spool at all
    assert wait_until(lambda: client.flush(1.0), 5)
    assert capture_server.attempts == []


def test_a_resend_asked_again_while_one_is_in_flight_sends_nothing_twice(
    make_client, capture_server, tmp_path
):
    capture_server.default = Reply(503, delay=30)
    client = make_client(spool_dir=str(tmp_path), **FAST)
    c = Conv("c1", "u1")
    client.record(UserInput(c, "k1", "spooled"))
    client.flush(0.01)
    assert capture_server.wait_for(lambda s: len(s.attempts) == 1, 10)
    assert client.spool_pending(timeout=5) == 1

    # the resend is held by the server; meanwhile a new invocation asks again, and another
    # delivery succeeds (which also asks for a resend of what was spooled)
    capture_server.default = Reply()
    capture_server.script = [Reply(delay=30)]
    assert client.resend_spool() is True
    assert capture_server.wait_for(lambda s: len(s.attempts) == 2, 10)
    client.resend_spool()
    client.record(UserInput(Conv("c2", "u1"), "k2", "other"))
    assert client.flush(0.5) is False  # the resend is still held
    capture_server.release.set()
    assert client.flush(10) is True
    assert sorted(m["content"] for m in capture_server.messages) == ["other", "spooled"]
    assert len(capture_server.attempts) == 3  # the held first try, one resend, "other"

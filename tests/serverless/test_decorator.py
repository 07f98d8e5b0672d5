"""``@gf.serverless`` in this process: what a handler recorded has reached the loopback
ingest endpoint when the handler returns (or raises), within the deadline rule of
docs/DESIGN.md section 6b. The real Lambda runtime runs it in test_lambda_runtime.py."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import gf_integrations as gf
from gf_integrations.core.context import Conv
from gf_integrations.core.events import UserInput
from gf_integrations.faas import MARGIN
from helpers.capture_server import Reply

HELD = Reply(503, delay=30)  # an ingest endpoint slower than any deadline here


def record(client: gf.GreenflashClient, key: str) -> None:
    client.record(UserInput(Conv(f"conv-{key}", "u1"), key, f"text {key}"))


def contents(capture_server: Any) -> list[str]:
    return [m["content"] for m in capture_server.messages]


class LambdaContext:
    """What a Lambda context offers the decorator: the time left."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.time() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - time.time()) * 1000)


def test_a_sync_handler_has_delivered_when_it_returns(make_client, capture_server):
    client = make_client()

    @gf.serverless(client=client)
    def handler(request: str) -> str:
        record(client, request)
        return f"ok {request}"

    assert handler("a") == "ok a"
    assert contents(capture_server) == ["text a"]  # no flush() of the test's own
    assert handler.__name__ == "handler"


def test_an_async_handler_has_delivered_when_it_returns(make_client, capture_server):
    client = make_client()

    @gf.serverless(client=client)
    async def handler(event: dict[str, Any], context: Any) -> str:
        await asyncio.sleep(0)
        record(client, event["key"])
        return "done"

    assert asyncio.run(handler({"key": "b"}, LambdaContext(30))) == "done"
    assert contents(capture_server) == ["text b"]


def test_every_live_client_is_delivered_by_default(make_client, capture_server):
    first, second = make_client(), make_client()

    @gf.serverless
    def handler() -> None:
        record(first, "one")
        record(second, "two")

    handler()
    assert sorted(contents(capture_server)) == ["text one", "text two"]


def test_a_handler_that_raises_is_delivered_and_its_exception_unchanged(
    make_client, capture_server
):
    client = make_client()
    error = KeyError("missing")

    @gf.serverless(client=client)
    def handler() -> None:
        record(client, "c")
        raise error

    with pytest.raises(KeyError) as info:
        handler()
    assert info.value is error
    assert info.traceback[-1].name == "handler"  # it still ends where it was raised
    assert contents(capture_server) == ["text c"]

    async_error = KeyError("missing too")

    @gf.serverless(client=client)
    async def async_handler() -> None:
        record(client, "d")
        raise async_error

    with pytest.raises(KeyError) as info:
        asyncio.run(async_handler())
    assert info.value is async_error
    assert info.traceback[-1].name == "async_handler"
    assert contents(capture_server) == ["text c", "text d"]


def test_a_callable_whose_call_is_async_is_awaited_then_delivered(make_client, capture_server):
    client = make_client()

    class Handler:
        async def __call__(self, request: str) -> str:
            record(client, request)
            return request

    handler = gf.serverless(client=client)(Handler())
    assert asyncio.run(handler("e")) == "e"
    assert contents(capture_server) == ["text e"]


def test_the_lambda_deadline_bounds_the_flush_and_the_rest_is_spooled_then_resent(
    make_client, capture_server, tmp_path
):
    capture_server.default = HELD
    client = make_client(spool_dir=str(tmp_path), request_timeout=30.0)

    @gf.serverless(client=client)
    def handler(event: dict[str, Any], context: Any) -> str:
        record(client, event["key"])
        return "answered"

    context = LambdaContext(0.8)
    assert handler({"key": "late"}, context) == "answered"
    returned = time.time()
    assert returned < context.deadline - MARGIN / 2, "the flush ran into the margin"
    assert client.stats()["spooled"] == 1
    assert len(list(tmp_path.glob("*.json"))) == 1
    assert contents(capture_server) == []

    # the next invocation resends it first; both have arrived when it returns
    capture_server.default = Reply()
    handler({"key": "next"}, LambdaContext(30))
    assert sorted(contents(capture_server)) == ["text late", "text next"]
    assert client.stats()["unspooled"] == 1
    assert list(tmp_path.glob("*.json")) == []


def test_without_a_context_the_timeout_bounds_the_flush(make_client, capture_server, tmp_path):
    capture_server.default = HELD
    client = make_client(spool_dir=str(tmp_path), request_timeout=30.0)

    @gf.serverless(timeout=0.3, client=client)
    def handler(request: str) -> str:
        record(client, request)
        return request

    started = time.monotonic()
    handler("f")
    assert time.monotonic() - started < 5  # not the server's 30 s
    assert client.stats()["spooled"] == 1


def test_our_failures_never_reach_the_handler(make_client, capture_server, monkeypatch):
    client = make_client()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("our bug")

    for method in ("flush", "spool_pending", "resend_spool"):
        monkeypatch.setattr(client, method, broken)

    @gf.serverless(client=client)
    def handler() -> str:
        return "fine"

    @gf.serverless(client=client)
    def failing() -> None:
        raise ValueError("the handler's own")

    assert handler() == "fine"
    with pytest.raises(ValueError, match="the handler's own"):
        failing()


def test_a_bad_timeout_fails_at_decoration():
    with pytest.raises(gf.ConfigurationError, match="timeout"):
        gf.serverless(timeout=0)
    with pytest.raises(TypeError):
        gf.serverless(42)  # type: ignore[call-overload]

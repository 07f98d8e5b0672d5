"""wrap_anthropic end to end: the real Anthropic client over the fake Messages API
(tests/helpers/fake_anthropic.py, real wire format incl. SSE), our real uploader, a real
loopback capture server (or the local collector).

Every assertion is on what reached the capture server / collector, or on what the caller
got back from the SDK.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import inspect
import json
import logging
import subprocess
import sys
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from anthropic.lib.streaming import MessageStreamManager
from anthropic.resources import beta as beta_resources
from anthropic.resources import messages as messages_resources
from anthropic.types import Message
from pydantic import BaseModel

import anthropic
import gf_integrations as gf
from anthropic import Anthropic, AsyncAnthropic
from gf_integrations.anthropic import wrap_anthropic
from gf_integrations.common import once
from gf_integrations.core import context as gf_context
from helpers.capture import delivered, kinds
from helpers.fake_anthropic import (
    DEFAULT_USAGE,
    FakeAnthropic,
    redacted_thinking,
    sdk_http,
    text,
    thinking,
    tool_use,
)
from helpers.usage import SAME_CALL

MODEL = "claude-sonnet-4-6"
SYSTEM = "You are a weather bot."
TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]
MODES = ["create", "create-stream", "stream-helper"]
STREAM_MODES = MODES[1:]

# what the installed SDK has (the floor, anthropic 0.40, lacks these)
HAS_PARSE = hasattr(messages_resources.Messages, "parse")
HAS_BETA_PARSE = hasattr(beta_resources.messages.Messages, "parse")
HAS_BETA_STREAM = hasattr(beta_resources.messages.Messages, "stream")
# before it took an API key, AnthropicBedrock signed every request with boto3 (SigV4)
BEDROCK_API_KEY = "api_key" in inspect.signature(anthropic.AnthropicBedrock.__init__).parameters
HAS_LANGCHAIN_ANTHROPIC = importlib.util.find_spec("langchain_anthropic") is not None
NO_LANGCHAIN = "langchain-anthropic is not installed (the locked suite runs this)"


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


async def _acall(client: AsyncAnthropic, mode: str, kwargs: dict[str, Any]) -> Any:
    if mode == "create":
        return await client.messages.create(**kwargs)
    if mode == "create-stream":
        return [e async for e in await client.messages.create(stream=True, **kwargs)]
    async with client.messages.stream(**kwargs) as s:
        return await s.get_final_message()


def _call(client: Anthropic, mode: str, kwargs: dict[str, Any]) -> Any:
    if mode == "create":
        return client.messages.create(**kwargs)
    if mode == "create-stream":
        return list(client.messages.create(stream=True, **kwargs))
    with client.messages.stream(**kwargs) as s:
        return s.get_final_message()


class Driver:
    """One wrapped client (or a bare one), sync or async, calling in one of the three modes."""

    def __init__(
        self, fake: FakeAnthropic, flavor: str, mode: str, *, bare: bool = False, **wrap: Any
    ) -> None:
        self.flavor, self.mode = flavor, mode
        raw = fake.async_client() if flavor == "async" else fake.client()
        self.client = raw if bare else wrap_anthropic(raw, **wrap)

    def __call__(self, **kwargs: Any) -> Any:
        kwargs.setdefault("model", MODEL)
        kwargs.setdefault("max_tokens", 1024)
        if self.flavor == "async":
            return asyncio.run(_acall(self.client, self.mode, kwargs))
        return _call(self.client, self.mode, kwargs)


def bare_error(
    script: Callable[[FakeAnthropic], object], flavor: str, mode: str, **call: Any
) -> BaseException:
    """What an unwrapped client raises on this fault, to compare the wrapped one against:
    our wrapper re-raises exactly that, whatever class the installed SDK uses for it."""
    fake = FakeAnthropic()
    script(fake)
    with pytest.raises(Exception) as info:
        Driver(fake, flavor, mode, bare=True)(**call)
    return info.value


def assert_same_error(got: BaseException, bare: BaseException) -> None:
    assert type(got) is type(bare)
    assert str(got) == str(bare)


@pytest.fixture(params=["sync", "async"])
def flavor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- types and object identity ----------------------------------------------------------


def test_returns_the_same_client_and_unchanged_types(gf_client, capture_server):
    fake = FakeAnthropic()
    raw = fake.client()
    client = wrap_anthropic(raw, external_conversation_id="types")
    assert client is raw
    assert type(client) is Anthropic
    assert wrap_anthropic(client) is client  # twice: harmless, still one layer
    kw: dict[str, Any] = {"model": MODEL, "max_tokens": 64, "messages": [user("hi")]}
    r = client.messages.create(**kw)
    assert type(r) is Message
    s = client.messages.create(stream=True, **kw)
    assert type(s) is anthropic.Stream
    assert isinstance(s.response, sdk_http.Response)
    with s:
        events = list(s)
    assert next(e.type for e in events) == "message_start"
    manager = client.messages.stream(**kw)
    assert type(manager) is MessageStreamManager
    with manager as ms:
        assert "".join(ms.text_stream) == "Answer 1"
    copy = client.with_options(timeout=5)
    assert type(copy) is Anthropic
    assert copy is not client
    copy.messages.create(**kw)
    msgs = delivered(gf_client, capture_server)
    # four calls with the same prompt: the user message once, the same reply once
    assert kinds(msgs) == ["user", "assistant"]
    assert len(fake.requests) == 4


def test_wrapped_methods_keep_signatures_and_bad_arguments_fail_loudly():
    fake = FakeAnthropic()
    client = wrap_anthropic(fake.client())
    sig = inspect.signature(client.messages.create)
    assert "messages" in sig.parameters
    assert "self" not in sig.parameters
    aclient = wrap_anthropic(fake.async_client())
    assert inspect.iscoroutinefunction(aclient.messages.create)
    assert inspect.iscoroutinefunction(aclient.beta.messages.create)
    # what the SDK has is wrapped and stays a coroutine function; what it lacks stays absent
    assert hasattr(aclient.messages, "parse") is HAS_PARSE
    assert hasattr(aclient.beta.messages, "parse") is HAS_BETA_PARSE
    assert hasattr(aclient.beta.messages, "stream") is HAS_BETA_STREAM
    if HAS_PARSE:
        assert inspect.iscoroutinefunction(aclient.messages.parse)
    assert not inspect.iscoroutinefunction(aclient.messages.stream)
    with pytest.raises(TypeError, match="wrap_anthropic"):
        wrap_anthropic(object())
    with pytest.raises(TypeError, match="GreenflashClient"):
        wrap_anthropic(fake.client(), client="not a client")  # type: ignore[arg-type]
    # the old gf_client= spelling is gone: an unknown keyword, as Python would say
    with pytest.raises(TypeError, match="unexpected keyword argument 'gf_client'"):
        wrap_anthropic(fake.client(), gf_client=None)  # type: ignore[call-arg]


# -- mapping -----------------------------------------------------------------------------


def test_plain_turn(gf_client, capture_server, flavor, mode):
    fake = FakeAnthropic(resolve={MODEL: MODEL + "-20260101"})
    ask = Driver(fake, flavor, mode, external_user_id="u1", properties={"app": "demo"})
    ask(system=SYSTEM, messages=[user("Weather?")])
    msgs = delivered(gf_client, capture_server)
    assert kinds(msgs) == ["user", "assistant"]
    req = capture_server.requests[0]
    assert req["systemPrompt"] == SYSTEM
    assert req["externalUserId"] == "u1"
    assert req["externalConversationId"].startswith("anthropic-")
    assert req["properties"] == {"app": "demo"}
    question, reply = msgs
    assert question["content"] == "Weather?"
    assert reply["content"] == "Answer 1"
    assert reply["model"] == MODEL + "-20260101"  # the model the API answered with
    assert reply["parentExternalMessageId"] == question["externalMessageId"]
    props = reply["properties"]
    # input_tokens leaves the cache out: the vocabulary's inputTokens holds it
    assert props["usage"] == SAME_CALL
    for key in DEFAULT_USAGE:  # the API's own usage, as it came
        assert props["providerUsage"][key] == DEFAULT_USAGE[key], key
    assert props["finishReason"] == "end_turn"
    assert props["latencyMs"] >= 0
    assert props["provider"] == "anthropic"
    assert props["api"] == "messages"
    assert props["responseId"].startswith("msg_")
    assert "partial" not in props
    if mode != "create":
        assert props["stream"] is True
        assert props["timeToFirstTokenMs"] >= 0


def test_system_blocks_with_cache_control_become_the_system_prompt(gf_client, capture_server):
    fake = FakeAnthropic()
    ask = Driver(fake, "sync", "create", external_conversation_id="sys")
    system = [
        {"type": "text", "text": "You are a weather bot.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Answer in Celsius."},
    ]
    ask(system=system, messages=[user([{"type": "text", "text": "Paris?"}])])
    msgs = delivered(gf_client, capture_server)
    assert (
        capture_server.requests[0]["systemPrompt"] == "You are a weather bot.\n\nAnswer in Celsius."
    )
    assert fake.requests[0]["system"] == system  # the API got exactly what the caller sent
    assert [m["content"] for m in msgs] == ["Paris?", "Answer 1"]


def _tool_turn(fake: FakeAnthropic) -> list[dict[str, Any]]:
    """Queue a thinking + text + two tool_use reply, then the final answer."""
    blocks = [
        thinking("The user wants weather and time.", signature="SIG-must-not-leak"),
        text("Let me check both."),
        tool_use("get_weather", {"city": "Paris", "units": ["C"]}, id="toolu_a"),
        tool_use("get_time", {"tz": "CET"}, id="toolu_b"),
    ]
    fake.queue(*blocks)
    fake.queue(text("Sunny, 21 C; the clock is broken."))
    return blocks


def _results(weather: Any, clock: Any, clock_failed: bool) -> dict[str, Any]:
    """The user turn answering :func:`_tool_turn`'s two calls with ``tool_result`` blocks."""
    second: dict[str, Any] = {"type": "tool_result", "tool_use_id": "toolu_b", "content": clock}
    if clock_failed:
        second["is_error"] = True
    return user([{"type": "tool_result", "tool_use_id": "toolu_a", "content": weather}, second])


def test_tool_loop_maps_thinking_calls_observations_and_errors(
    gf_client, capture_server, flavor, mode
):
    fake = FakeAnthropic()
    ask = Driver(fake, flavor, mode, external_conversation_id=f"tools-{flavor}-{mode}")
    blocks = _tool_turn(fake)
    history: list[Any] = [user("Weather and time in Paris?")]
    first = ask(system=SYSTEM, messages=history, tools=TOOLS)
    # resend the reply as apps do: the SDK's block objects, or plain dicts
    history.append(
        {"role": "assistant", "content": first.content if mode != "create-stream" else blocks}
    )
    history.append(_results("sunny, 21C", [{"type": "text", "text": "clock unavailable"}], True))
    ask(system=SYSTEM, messages=history, tools=TOOLS)
    msgs = delivered(gf_client, capture_server)
    assert kinds(msgs) == [
        "user",
        "thought",
        "thought",
        "tool_call",
        "tool_call",
        "observation",
        "tool_error",
        "final_response",
    ]
    question, reasoning, said, call_a, call_b, obs, err, final = msgs
    assert reasoning["content"] == "The user wants weather and time."
    assert reasoning["properties"] == {"kind": "reasoning"}
    assert said["content"] == "Let me check both."
    assert said["properties"]["finishReason"] == "tool_use"
    assert call_a["toolName"] == "get_weather"
    assert call_a["input"] == {"city": "Paris", "units": ["C"]}  # an object, streamed or not
    assert call_b["toolName"] == "get_time"
    assert call_b["input"] == {"tz": "CET"}
    assert call_a["parentExternalMessageId"] == said["externalMessageId"]
    assert said["parentExternalMessageId"] == question["externalMessageId"]
    assert obs["parentExternalMessageId"] == call_a["externalMessageId"]
    assert obs["toolName"] == "get_weather"
    assert obs["output"] == {"result": "sunny, 21C"}
    assert err["parentExternalMessageId"] == call_b["externalMessageId"]
    assert err["toolName"] == "get_time"
    assert err["output"] == {"error": "clock unavailable"}
    assert final["content"] == "Sunny, 21 C; the clock is broken."
    assert final["model"] == MODEL
    # the thinking signature never leaves the process
    assert "SIG-must-not-leak" not in json.dumps(capture_server.requests)


def test_redacted_thinking_is_a_marker_never_the_data(gf_client, capture_server, flavor, mode):
    fake = FakeAnthropic()
    ask = Driver(fake, flavor, mode, external_conversation_id=f"redacted-{mode}")
    fake.queue(redacted_thinking("ENCRYPTED-BLOB"), text("Done."))
    ask(messages=[user("hi")])
    msgs = delivered(gf_client, capture_server)
    assert kinds(msgs) == ["user", "thought", "assistant"]
    assert msgs[1]["content"] == "[redacted thinking]"
    assert msgs[2]["content"] == "Done."
    assert "ENCRYPTED-BLOB" not in json.dumps(capture_server.requests)


def test_media_blocks_become_placeholders(gf_client, capture_server):
    fake = FakeAnthropic()
    ask = Driver(fake, "sync", "create", external_conversation_id="media")
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }
    ask(messages=[user([image, {"type": "text", "text": "What is this?"}])])
    msgs = delivered(gf_client, capture_server)
    assert msgs[0]["content"] == "[image]\nWhat is this?"
    assert "iVBORw0KGgo" not in json.dumps(capture_server.requests)


def test_stateless_growing_history_is_one_conversation_each_message_once(
    gf_client, capture_server, flavor
):
    fake = FakeAnthropic()
    ask = Driver(fake, flavor, "create")  # no conversation id anywhere
    history: list[Any] = []
    for turn in range(1, 5):
        history.append(user(f"question {turn}"))
        r = ask(system=SYSTEM, messages=list(history))
        history.append({"role": "assistant", "content": r.content})
    # another user (metadata.user_id) with the same opening: another conversation
    ask(system=SYSTEM, messages=history[:1], metadata={"user_id": "someone-else"})
    msgs = delivered(gf_client, capture_server)
    convs = {r["externalConversationId"] for r in capture_server.requests}
    assert len(convs) == 2
    mine = [
        m
        for r in capture_server.requests
        if r["externalUserId"] == "anonymous"
        for m in r["messages"]
    ]
    assert [m["content"] for m in mine] == [
        x for t in range(1, 5) for x in (f"question {t}", f"Answer {t}")
    ]
    assert len({m["externalMessageId"] for m in msgs}) == len(msgs)
    assert len([r for r in capture_server.requests if r.get("systemPrompt")]) == 2
    # conversations are sent concurrently: no order between them, one user each
    users = {r["externalConversationId"]: r["externalUserId"] for r in capture_server.requests}
    assert sorted(users.values()) == ["anonymous", "someone-else"]


def test_a_caller_mutating_its_list_after_the_call_does_not_leak(gf_client, capture_server):
    fake = FakeAnthropic()
    client = wrap_anthropic(fake.client(), external_conversation_id="mut")
    history: list[Any] = [user("q1")]
    stream = client.messages.create(model=MODEL, max_tokens=9, messages=history, stream=True)
    history.append(user("appended before the stream was read, never sent"))
    list(stream)
    msgs = delivered(gf_client, capture_server)
    assert [m["content"] for m in msgs] == ["q1", "Answer 1"]


# -- streams -----------------------------------------------------------------------------


def test_stream_usage_merges_start_and_delta(gf_client, capture_server, flavor):
    fake = FakeAnthropic()
    fake.queue(text("Counted."), usage={"output_tokens": 42})
    ask = Driver(fake, flavor, "create-stream", external_conversation_id="usage")
    events = ask(messages=[user("count")])
    assert events[0].message.usage.output_tokens == 1  # message_start: a placeholder
    assert events[-2].usage.output_tokens == 42  # message_delta: the cumulative count
    reply = delivered(gf_client, capture_server)[-1]
    assert reply["properties"]["usage"] == {**SAME_CALL, "outputTokens": 42, "totalTokens": 53}
    assert reply["properties"]["providerUsage"]["output_tokens"] == 42


def test_stream_closed_early_is_recorded_once_as_partial(gf_client, capture_server, flavor):
    fake = FakeAnthropic()
    fake.queue(text("A long answer in pieces."))
    fake.queue(text("Another long answer."))

    async def amain(client: AsyncAnthropic) -> None:
        stream = await client.messages.create(
            model=MODEL, max_tokens=9, messages=[user("a")], stream=True
        )
        async for event in stream:
            if event.type == "content_block_delta":
                break
        await stream.close()
        await stream.close()
        async with client.messages.stream(model=MODEL, max_tokens=9, messages=[user("b")]) as s:
            async for event in s:
                if event.type == "text":
                    break

    def main(client: Anthropic) -> None:
        stream = client.messages.create(
            model=MODEL, max_tokens=9, messages=[user("a")], stream=True
        )
        for event in stream:
            if event.type == "content_block_delta":
                break
        stream.close()
        stream.close()
        with client.messages.stream(model=MODEL, max_tokens=9, messages=[user("b")]) as s:
            for event in s:
                if event.type == "text":
                    break

    if flavor == "async":
        asyncio.run(amain(wrap_anthropic(fake.async_client(), external_conversation_id="early")))
    else:
        main(wrap_anthropic(fake.client(), external_conversation_id="early"))
    msgs = delivered(gf_client, capture_server)
    assert kinds(msgs) == ["user", "assistant", "user", "assistant"]
    assert [msgs[1]["content"], msgs[3]["content"]] == ["A lo", "Anot"]
    for reply in (msgs[1], msgs[3]):
        assert reply["properties"]["partial"] is True
        assert reply["properties"]["streamEnd"] == "closed"


def test_abandoned_stream_is_recorded_when_collected(gf_client, capture_server):
    fake = FakeAnthropic()
    fake.queue(text("Never read to the end."))
    client = wrap_anthropic(fake.client(), external_conversation_id="gc")

    def start() -> None:
        stream = client.messages.create(
            model=MODEL, max_tokens=9, messages=[user("a")], stream=True
        )
        for event in stream:  # read up to the first text, then drop it without close
            if event.type == "content_block_delta":
                break

    start()
    gc.collect()
    msgs = delivered(gf_client, capture_server)
    assert kinds(msgs) == ["user", "assistant"]
    assert msgs[1]["content"] == "Neve"
    assert msgs[1]["properties"]["partial"] is True
    assert msgs[1]["properties"]["streamEnd"] == "abandoned"


def test_a_stream_never_read_is_recorded_when_collected(gf_client, capture_server, flavor):
    fake = FakeAnthropic()
    fake.queue(text("Nobody reads this."))

    async def amain() -> None:
        client = wrap_anthropic(fake.async_client(), external_conversation_id="unread")
        await client.messages.create(model=MODEL, max_tokens=9, messages=[user("a")], stream=True)

    def main() -> None:
        client = wrap_anthropic(fake.client(), external_conversation_id="unread")
        client.messages.create(model=MODEL, max_tokens=9, messages=[user("a")], stream=True)

    if flavor == "async":
        asyncio.run(amain())
    else:
        main()
    gc.collect()
    msgs = delivered(gf_client, capture_server)
    assert kinds(msgs) == ["user", "assistant"]
    assert msgs[1]["content"] == ""
    assert msgs[1]["properties"]["partial"] is True
    assert msgs[1]["properties"]["streamEnd"] == "abandoned"


def test_an_async_stream_manager_never_entered_leaves_no_coroutine_of_ours(gf_client):
    fake = FakeAnthropic()
    client = wrap_anthropic(fake.async_client(), external_conversation_id="never")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        manager = client.messages.stream(model=MODEL, max_tokens=9, messages=[user("a")])
        del manager
        gc.collect()
    unawaited = [str(w.message) for w in seen if "never awaited" in str(w.message)]
    # the SDK's own request coroutine warns as it does without us; nothing of ours does
    assert all("AsyncAPIClient" in m for m in unawaited), unawaited
    assert fake.requests == []


def _cut(fake: FakeAnthropic) -> None:
    fake.queue(
        text("cut short here"),
        tool_use("get_weather", {"city": "Paris"}, id="toolu_c"),
        cut_after=12,  # message_start, ping, the text block, then into the JSON
    )


@pytest.mark.parametrize("stream_mode", STREAM_MODES)
def test_dropped_connection_mid_stream_is_reraised_and_recorded_partial(
    gf_client, capture_server, flavor, stream_mode
):
    # the class depends on the SDK: httpx's RemoteProtocolError at 0.40, APIConnectionError at 2.17
    bare = bare_error(_cut, flavor, stream_mode, messages=[user("a")])
    fake = FakeAnthropic()
    _cut(fake)
    ask = Driver(fake, flavor, stream_mode, external_conversation_id=f"cut-{flavor}-{stream_mode}")
    with pytest.raises(type(bare)) as info:
        ask(messages=[user("a")])
    assert_same_error(info.value, bare)
    msgs = delivered(gf_client, capture_server)
    assert kinds(msgs) == ["user", "thought", "tool_call"]
    said, call = msgs[1], msgs[2]
    assert said["content"] == "cut short here"
    assert said["properties"]["partial"] is True
    assert said["properties"]["streamEnd"] == "error"
    assert said["properties"]["error"]["type"] == type(bare).__name__
    # the tool input was cut mid-JSON: kept verbatim, marked
    assert call["input"]["invalidJson"] is True
    assert call["input"]["arguments"].startswith('{"cit')


def _sse_error(fake: FakeAnthropic) -> None:
    fake.queue(
        text("Overloaded soon"), stream_error=("overloaded_error", "Overloaded"), error_after=4
    )


@pytest.mark.parametrize("stream_mode", STREAM_MODES)
def test_sse_error_event_is_reraised_unchanged_and_recorded(
    gf_client, capture_server, flavor, stream_mode
):
    bare = bare_error(_sse_error, flavor, stream_mode, messages=[user("a")])
    assert isinstance(bare, anthropic.APIError)  # the SDK's own error, whichever subclass
    fake = FakeAnthropic()
    _sse_error(fake)
    ask = Driver(fake, flavor, stream_mode, external_conversation_id=f"sse-{flavor}-{stream_mode}")
    with pytest.raises(type(bare)) as info:
        ask(messages=[user("a")])
    assert_same_error(info.value, bare)
    assert "overloaded_error" in str(info.value)
    reply = delivered(gf_client, capture_server)[-1]
    assert reply["content"] == "Over"
    assert reply["properties"]["partial"] is True
    assert reply["properties"]["error"]["type"] == type(bare).__name__


# -- errors, raw calls, own failures -------------------------------------------------------


def _bad_request(fake: FakeAnthropic) -> None:
    fake.queue_error(400, "invalid_request_error", "max_tokens: too large")


def test_api_error_is_reraised_unchanged_and_recorded(gf_client, capture_server, flavor, mode):
    bare = bare_error(_bad_request, flavor, mode, messages=[user("x")])
    assert isinstance(bare, anthropic.APIStatusError)
    fake = FakeAnthropic()
    _bad_request(fake)
    ask = Driver(fake, flavor, mode, external_conversation_id=f"err-{flavor}-{mode}")
    with pytest.raises(type(bare)) as info:
        ask(messages=[user("x")])
    assert_same_error(info.value, bare)
    msgs = delivered(gf_client, capture_server)
    assert kinds(msgs) == ["user", "llm"]
    err = msgs[1]
    assert err["content"].startswith(f"{type(bare).__name__}: ")
    assert err["properties"]["statusCode"] == 400
    assert err["properties"]["error"]["type"] == type(bare).__name__
    assert err["model"] == MODEL


def test_raw_response_calls_logged_when_parsed(gf_client, capture_server):
    # LangChain's ChatAnthropic calls the API this way
    fake = FakeAnthropic()
    client = wrap_anthropic(fake.client(), external_conversation_id="raw")
    kw: dict[str, Any] = {"model": MODEL, "max_tokens": 9, "messages": [user("hi")]}
    raw = client.messages.with_raw_response.create(**kw)
    parsed = raw.parse()
    assert parsed.content[0].text == "Answer 1"
    assert raw.parse() is parsed  # the SDK's cached object; recorded once
    # read as lines, never parsed: passed through unlogged
    with client.messages.with_streaming_response.create(stream=True, **kw) as resp:
        lines = [line for line in resp.iter_lines() if line]
    assert lines[-1].startswith("data: ")
    assert "message_stop" in lines[-1]
    client.beta.messages.with_raw_response.create(**kw)  # not parsed: not logged
    assert len(fake.requests) == 3
    got = delivered(gf_client, capture_server)
    assert [m["content"] for m in got] == ["hi", "Answer 1"]
    assert got[1]["model"] == MODEL


async def _parse(raw: Any) -> Any:
    # anthropic 0.x's async raw response (a legacy response) parses synchronously
    value = raw.parse()
    return await value if inspect.isawaitable(value) else value


def test_async_raw_response_calls_logged_when_parsed(gf_client, capture_server):
    fake = FakeAnthropic()
    fake.queue(text("parsed"))
    fake.queue(text("streamed"))
    client = wrap_anthropic(fake.async_client(), external_conversation_id="araw")
    kw: dict[str, Any] = {"model": MODEL, "max_tokens": 9}

    async def main() -> None:
        raw = await client.messages.with_raw_response.create(messages=[user("a")], **kw)
        assert (await _parse(raw)).content[0].text == "parsed"
        async with client.messages.with_streaming_response.create(
            messages=[user("b")], stream=True, **kw
        ) as resp:
            stream = await _parse(resp)
            assert type(stream) is anthropic.AsyncStream
            assert [e.type async for e in stream][-1] == "message_stop"
        async with client.messages.with_streaming_response.create(
            messages=[user("c")], stream=True, **kw
        ) as resp:
            assert [line async for line in resp.iter_lines() if line]  # read, never parsed

    asyncio.run(main())
    msgs = delivered(gf_client, capture_server)
    assert len(fake.requests) == 3
    assert [(m.get("role"), m["content"]) for m in msgs] == [
        ("user", "a"),
        ("assistant", "parsed"),
        ("user", "b"),
        ("assistant", "streamed"),
    ]
    assert msgs[3]["properties"]["stream"] is True


def test_our_own_failure_never_reaches_the_caller(
    gf_client, capture_server, monkeypatch, caplog, flavor
):
    from gf_integrations.anthropic import flow

    def boom(*a: Any, **k: Any) -> None:
        raise RuntimeError("mapper bug")

    monkeypatch.setattr(flow, "record_message", boom)
    monkeypatch.setattr(once.process, "_keys", set())
    ask = Driver(FakeAnthropic(), flavor, "create", external_conversation_id="bug")
    with caplog.at_level(logging.WARNING, logger="gf_integrations"):
        for _ in range(3):
            r = ask(messages=[user("x")])
            assert r.content[0].text == "Answer 1"
    warnings = [r for r in caplog.records if "wrapper failed" in r.getMessage()]
    assert len(warnings) == 1
    # the exception's type, never its text (it may quote the host's data)
    assert "RuntimeError" in warnings[0].getMessage()
    assert "mapper bug" not in caplog.text
    assert "Anthropic" in warnings[0].getMessage()


# -- other entry points ----------------------------------------------------------------------


class Weather(BaseModel):
    city: str
    temp: int


def _entry(client: Any, name: str) -> Any:
    """``client.beta.messages.parse`` for ``"beta.messages.parse"``."""
    for part in name.split("."):
        client = getattr(client, part)
    return client


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param(
            "messages.parse",
            marks=pytest.mark.skipif(
                not HAS_PARSE, reason="anthropic < 0.77 has no messages.parse"
            ),
        ),
        "beta.messages.create",
        pytest.param(
            "beta.messages.stream",
            marks=pytest.mark.skipif(
                not HAS_BETA_STREAM, reason="anthropic < 0.43 has no beta.messages.stream"
            ),
        ),
        pytest.param(
            "beta.messages.parse",
            marks=pytest.mark.skipif(
                not HAS_BETA_PARSE, reason="anthropic < 0.73 has no beta.messages.parse"
            ),
        ),
    ],
)
def test_parse_and_beta_messages(gf_client, capture_server, flavor, entry):
    fake = FakeAnthropic()
    fake.queue(text('{"city": "Paris", "temp": 21}'))
    kw: dict[str, Any] = {"model": MODEL, "max_tokens": 64, "messages": [user("p")]}
    if entry.endswith(".parse"):
        kw["output_format"] = Weather

    async def amain(client: AsyncAnthropic) -> Any:
        if entry.endswith(".stream"):
            async with _entry(client, entry)(**kw) as s:
                return await s.get_final_message()
        return await _entry(client, entry)(**kw)

    def main(client: Anthropic) -> Any:
        if entry.endswith(".stream"):
            with _entry(client, entry)(**kw) as s:
                return s.get_final_message()
        return _entry(client, entry)(**kw)

    if flavor == "async":
        got = asyncio.run(amain(wrap_anthropic(fake.async_client(), external_conversation_id="p")))
    else:
        got = main(wrap_anthropic(fake.client(), external_conversation_id="p"))
    if entry.endswith(".parse"):
        assert got.parsed_output == Weather(city="Paris", temp=21)
    msgs = delivered(gf_client, capture_server)
    assert [
        (m["content"], m["properties"]["api"]) for m in msgs if m.get("role") == "assistant"
    ] == [('{"city": "Paris", "temp": 21}', entry.rpartition(".")[0])]
    assert len(fake.requests) == 1  # logged once, not twice


def _overloaded(fake: FakeAnthropic) -> None:
    fake.queue_error(529, "overloaded_error", "Overloaded")


def test_stream_helper_error_on_enter_is_reraised_and_recorded(gf_client, capture_server, flavor):
    bare = bare_error(_overloaded, flavor, "stream-helper", messages=[user("x")])
    assert isinstance(bare, anthropic.APIStatusError)
    fake = FakeAnthropic()
    _overloaded(fake)
    ask = Driver(fake, flavor, "stream-helper", external_conversation_id="enter")
    with pytest.raises(type(bare)) as info:
        ask(messages=[user("x")])
    assert_same_error(info.value, bare)
    assert info.value.status_code == 529
    msgs = delivered(gf_client, capture_server)
    assert kinds(msgs) == ["user", "llm"]
    assert msgs[1]["properties"]["statusCode"] == 529
    assert msgs[1]["properties"]["error"]["type"] == type(bare).__name__


def test_identity_precedence(gf_client, capture_server, flavor):
    fake = FakeAnthropic()
    plain = Driver(fake, flavor, "create")
    kw: dict[str, Any] = {"messages": [user("hi")], "metadata": {"user_id": "req-user"}}
    plain(**kw)
    with gf.conversation(
        "scoped-conv", external_user_id="scope-user", external_organization_id="org"
    ):
        plain(**kw)
    pinned = Driver(
        fake, flavor, "stream-helper", external_user_id="wrap-user", external_conversation_id="c"
    )
    with gf.conversation("scoped-conv-2", external_user_id="scope-user"):
        pinned(**kw)
    delivered(gf_client, capture_server)
    # conversations are sent concurrently: compare them by conversation, not by arrival
    got = {
        r["externalConversationId"]: (r["externalUserId"], r.get("externalOrganizationId"))
        for r in capture_server.requests
    }
    (derived,) = [c for c in got if c.startswith("anthropic-")]
    assert got == {
        derived: ("req-user", None),
        "scoped-conv": ("scope-user", "org"),
        "c": ("wrap-user", None),
    }


def test_explicit_client_keyword_and_with_options_copies(make_client, capture_server):
    mine = make_client()
    fake = FakeAnthropic()
    client = wrap_anthropic(fake.client(), client=mine, external_conversation_id="kw")
    copy = client.with_options(max_retries=1).with_options(timeout=3)
    copy.messages.create(model=MODEL, max_tokens=9, messages=[user("c")])
    with copy.messages.stream(
        model=MODEL,
        max_tokens=9,
        messages=[user("c"), {"role": "assistant", "content": "Answer 1"}, user("d")],
    ) as s:
        s.until_done()
    assert mine.flush(10)
    assert capture_server.wait_for(lambda s: len(s.requests) >= len(s.attempts))
    assert [m["content"] for m in capture_server.messages] == ["c", "Answer 1", "d", "Answer 2"]


def test_bedrock_and_vertex_clients(gf_client, capture_server, flavor):
    fake = FakeAnthropic()
    # static keys: signing them is offline (boto3, the SDK's bedrock extra)
    auth = {"api_key": "k"} if BEDROCK_API_KEY else {"aws_access_key": "a", "aws_secret_key": "s"}
    if flavor == "async":
        bedrock = fake.async_client(anthropic.AsyncAnthropicBedrock, aws_region="us-east-1", **auth)
        vertex = fake.async_client(
            anthropic.AsyncAnthropicVertex, region="us-east5", project_id="p", access_token="t"
        )
    else:
        bedrock = fake.client(anthropic.AnthropicBedrock, aws_region="us-east-1", **auth)
        vertex = fake.client(
            anthropic.AnthropicVertex, region="us-east5", project_id="p", access_token="t"
        )
    fake.queue(text("from bedrock"))
    fake.queue(text("from vertex"))
    fake.queue(text("streamed from vertex"))
    assert wrap_anthropic(bedrock, external_conversation_id="bedrock") is bedrock
    assert wrap_anthropic(vertex, external_conversation_id="vertex") is vertex
    assert type(bedrock).__name__.endswith("AnthropicBedrock")
    kw: dict[str, Any] = {"max_tokens": 9, "messages": [user("hi")]}

    async def amain() -> None:
        await bedrock.messages.create(model="anthropic.claude-sonnet-4-6-v1:0", **kw)
        await vertex.messages.create(model="claude-sonnet-4-6@20260101", **kw)
        async with vertex.with_options(timeout=5).messages.stream(
            model="claude-sonnet-4-6@20260101", **{**kw, "messages": [user("s")]}
        ) as s:
            await s.until_done()

    if flavor == "async":
        asyncio.run(amain())
    else:
        bedrock.messages.create(model="anthropic.claude-sonnet-4-6-v1:0", **kw)
        vertex.messages.create(model="claude-sonnet-4-6@20260101", **kw)
        with vertex.with_options(timeout=5).messages.stream(
            model="claude-sonnet-4-6@20260101", **{**kw, "messages": [user("s")]}
        ) as s:
            s.until_done()
    assert fake.paths[0] == "/model/anthropic.claude-sonnet-4-6-v1:0/invoke"
    assert fake.paths[2].endswith("claude-sonnet-4-6@20260101:streamRawPredict")
    delivered(gf_client, capture_server)
    replies: dict[str, list[tuple[str, str]]] = {}  # per conversation: no order between them
    for r in capture_server.requests:
        replies.setdefault(r["externalConversationId"], []).extend(
            (m["model"], m["properties"]["provider"])
            for m in r["messages"]
            if m.get("role") == "assistant"
        )
    assert replies == {
        "bedrock": [("anthropic.claude-sonnet-4-6-v1:0", "bedrock")],
        "vertex": [("claude-sonnet-4-6@20260101", "vertex")] * 2,
    }


# -- outer integrations ---------------------------------------------------------------------


def test_not_logged_when_an_outer_integration_records_the_call(gf_client, capture_server):
    client = wrap_anthropic(FakeAnthropic().client(), external_conversation_id="outer")
    active = {"on": False}

    def probe() -> bool:
        return active["on"]

    kw: dict[str, Any] = {"model": MODEL, "max_tokens": 9}
    gf_context.register_capture_probe(probe)
    try:
        active["on"] = True
        client.messages.create(messages=[user("a")], **kw)
        with client.messages.stream(messages=[user("b")], **kw) as s:
            s.until_done()
        active["on"] = False
        client.messages.create(messages=[user("c")], **kw)
    finally:
        gf_context._capture_probes.remove(probe)
    msgs = delivered(gf_client, capture_server)
    assert [m["content"] for m in msgs] == ["c", "Answer 1"]


@pytest.mark.skipif(not HAS_LANGCHAIN_ANTHROPIC, reason=NO_LANGCHAIN)
def test_chat_anthropic_with_a_wrapped_client_is_logged_once(gf_client, capture_server):
    import langchain_anthropic

    from gf_integrations.langchain import GreenflashCallbackHandler

    fake = FakeAnthropic()
    with fake.serve() as base_url:
        llm = langchain_anthropic.ChatAnthropic(
            model=MODEL, base_url=base_url, api_key="k", max_retries=0
        )
        wrap_anthropic(llm._client)  # the user wrapped the model's own client
        wrap_anthropic(llm._async_client)
        handler = GreenflashCallbackHandler(external_conversation_id="lc")
        config = {"callbacks": [handler]}
        assert llm.invoke("hi", config=config).content == "Answer 1"
        chunks = list(llm.stream("again", config=config))
        assert "".join(str(c.content) for c in chunks) == "Answer 1"
        asyncio.run(llm.ainvoke("async", config=config))
    msgs = delivered(gf_client, capture_server)
    assert len(fake.requests) == 3
    replies = [
        m for m in msgs if m.get("role") == "assistant" or m.get("messageType") == "final_response"
    ]
    assert len(replies) == 3  # one per call, by the LangChain handler only
    assert {r["externalConversationId"] for r in capture_server.requests} == {"lc"}


@pytest.mark.skipif(not HAS_LANGCHAIN_ANTHROPIC, reason=NO_LANGCHAIN)
def test_chat_anthropic_with_a_wrapped_client_and_no_handler_is_logged_by_the_wrapper(
    gf_client, capture_server
):
    import langchain_anthropic

    fake = FakeAnthropic()
    fake.queue(text("first"))
    fake.queue(text("Let me check."), tool_use("get_weather", {"city": "Oslo"}, id="toolu_lc"))
    fake.queue(text("third"))
    with fake.serve() as base_url:
        llm = langchain_anthropic.ChatAnthropic(
            model=MODEL, base_url=base_url, api_key="k", max_retries=0
        )
        wrap_anthropic(llm._client, external_conversation_id="lc-bare")
        wrap_anthropic(llm._async_client, external_conversation_id="lc-bare")
        assert llm.invoke("one").content == "first"
        tools = llm.bind_tools([TOOLS[0]])
        chunks = list(tools.stream("two"))  # ChatAnthropic's raw-response stream, parsed
        assert any(c.tool_call_chunks for c in chunks)
        assert asyncio.run(llm.ainvoke("three")).content == "third"
    msgs = delivered(gf_client, capture_server)
    assert len(fake.requests) == 3
    assert kinds(msgs) == [
        "user",
        "assistant",
        "user",
        "thought",
        "tool_call",
        "user",
        "assistant",
    ]
    assert msgs[1]["properties"]["usage"] == SAME_CALL
    assert msgs[4]["input"] == {"city": "Oslo"}
    assert msgs[3]["properties"]["stream"] is True


def test_collector_end_to_end(collector):
    fake = FakeAnthropic()
    _tool_turn(fake)
    gfc = gf.GreenflashClient(base_url=collector.base_url, flush_interval=0.05)
    try:
        client = wrap_anthropic(fake.client(), client=gfc, external_conversation_id="e2e")
        history: list[Any] = [user("Weather and time in Paris?")]
        with client.messages.stream(
            model=MODEL, max_tokens=64, system=SYSTEM, messages=history, tools=TOOLS
        ) as s:
            first = s.get_final_message()
        history.append({"role": "assistant", "content": first.content})
        history.append(_results("sunny", "n/a", True))
        client.messages.create(
            model=MODEL, max_tokens=64, system=SYSTEM, messages=history, tools=TOOLS
        )
        assert gfc.flush(10)
    finally:
        gfc.shutdown(timeout=2)
    stored = collector.messages("e2e")
    assert [m["messageType"] for m in stored] == [
        "user_message",
        "thought",
        "thought",
        "tool_call",
        "tool_call",
        "observation",
        "tool_error",
        "final_response",
    ]
    (root,) = collector.conversation_tree("e2e")

    def shape(node: dict[str, Any]) -> Any:
        label = node["toolName"] or node["content"]
        return (node["messageType"], label, [shape(c) for c in node["children"]])

    assert shape(root) == (
        "user_message",
        "Weather and time in Paris?",
        [
            ("thought", "The user wants weather and time.", []),
            (
                "thought",
                "Let me check both.",
                [
                    ("tool_call", "get_weather", [("observation", "get_weather", [])]),
                    ("tool_call", "get_time", [("tool_error", "get_time", [])]),
                ],
            ),
            ("final_response", "Sunny, 21 C; the clock is broken.", []),
        ],
    )
    said = root["children"][1]
    assert said["children"][0]["input"] == {"city": "Paris", "units": ["C"]}
    assert said["properties"]["usage"] == SAME_CALL
    assert said["properties"]["stream"] is True


# -- sync / async parity, packaging ------------------------------------------------------------


_VOLATILE = ("latencyMs", "timeToFirstTokenMs", "responseId")


def _normalise(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for req in requests:
        req = json.loads(json.dumps(req))
        for m in req["messages"]:
            m.pop("createdAt", None)
            for key in _VOLATILE:
                (m.get("properties") or {}).pop(key, None)
        out.append(req)
    return out


def test_sync_and_async_produce_identical_payloads(make_client, capture_server, mode):
    results = []
    for flavor in ("sync", "async"):
        capture_server.requests.clear()
        fake = FakeAnthropic()
        blocks = _tool_turn(fake)
        mine = make_client()
        ask = Driver(fake, flavor, mode, client=mine, external_user_id="parity")
        history: list[Any] = [user("Weather and time in Paris?")]
        ask(system=SYSTEM, messages=history, tools=TOOLS)
        history.append({"role": "assistant", "content": blocks})
        history.append(_results("sunny", "14:05", False))
        ask(system=SYSTEM, messages=history, tools=TOOLS)
        assert mine.flush(10)
        assert capture_server.wait_for(lambda s: len(s.requests) >= len(s.attempts))
        results.append([m for r in _normalise(capture_server.requests) for m in r["messages"]])
        capture_server.attempts.clear()
    assert results[0] == results[1]
    assert kinds(results[0]) == [
        "user",
        "thought",
        "thought",
        "tool_call",
        "tool_call",
        "observation",
        "observation",
        "final_response",
    ]


def test_importing_the_package_does_not_import_anthropic():
    code = "import sys, gf_integrations; print('anthropic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

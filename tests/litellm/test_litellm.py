"""GreenflashLogger end to end: LiteLLM's real ``completion`` / ``acompletion`` against the
fake OpenAI API on a loopback port, our real uploader, a real loopback capture server.

Every assertion is on what the capture server received, or on what the caller got back.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

# not `importorskip("litellm")`: without LiteLLM, this very folder imports as a namespace
pytest.importorskip("litellm.integrations.custom_logger")

import gf_integrations as gf
import litellm
from gf_integrations.litellm import GreenflashLogger
from helpers.capture import delivered, kinds
from helpers.fake_openai import CHAT_USAGE, FakeOpenAI
from helpers.usage import SAME_CALL

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


class Observed(GreenflashLogger):
    """The logger, counting the success and failure hooks that returned (so a test waits
    for LiteLLM's logging thread or task without sleeping)."""

    def __init__(self, **identity: Any) -> None:
        super().__init__(**identity)
        self.finished = 0
        self.cond = threading.Condition()

    def _note(self) -> None:
        with self.cond:
            self.finished += 1
            self.cond.notify_all()

    def log_success_event(self, *args: Any, **kwargs: Any) -> None:
        super().log_success_event(*args, **kwargs)
        self._note()

    async def async_log_success_event(self, *args: Any, **kwargs: Any) -> None:
        await super().async_log_success_event(*args, **kwargs)
        self._note()

    def log_failure_event(self, *args: Any, **kwargs: Any) -> None:
        super().log_failure_event(*args, **kwargs)
        self._note()

    async def async_log_failure_event(self, *args: Any, **kwargs: Any) -> None:
        await super().async_log_failure_event(*args, **kwargs)
        self._note()

    def wait(self, n: int, timeout: float = 10.0) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: self.finished >= n, timeout)


def _detach(logger: Any) -> None:
    """Take ``logger`` out of every callback list LiteLLM copied it into."""
    for name in dir(litellm):
        value = getattr(litellm, name, None)
        if isinstance(value, list):
            value[:] = [c for c in value if c is not logger]
    manager = getattr(litellm, "logging_callback_manager", None)
    if manager is not None and hasattr(manager, "_reset_all_callbacks"):
        manager._reset_all_callbacks()


@pytest.fixture
def fake() -> FakeOpenAI:
    return FakeOpenAI()


@pytest.fixture
def base_url(fake: FakeOpenAI) -> Iterator[str]:
    with fake.serve() as url:
        yield url


@pytest.fixture
def attach() -> Iterator[Any]:
    """``attach(**identity)`` installs an Observed logger as ``litellm.callbacks``."""
    installed: list[Any] = []

    def factory(**identity: Any) -> Observed:
        logger = Observed(**identity)
        litellm.callbacks = [logger]
        installed.append(logger)
        return logger

    yield factory
    litellm.callbacks = []
    for logger in installed:
        _detach(logger)


def ask(base_url: str, messages: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
    return {
        "model": "openai/gpt-4o-mini",
        "api_base": base_url,
        "api_key": "sk-test",
        "messages": messages,
        **kwargs,
    }


def strip(msgs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """(kind, content or tool name) of each message, for the sequence assertions."""
    out: list[tuple[Any, ...]] = []
    for m in msgs:
        kind = m.get("messageType") or m.get("role")
        out.append((kind, m.get("toolName") or m.get("content")))
    return out


# -- plain calls ------------------------------------------------------------------------

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hi"},
]


def test_completion_records_the_turn(attach, fake, base_url, gf_client, capture_server):
    logger = attach(external_user_id="u-1")
    fake.reply_text("Hi there.")
    response = litellm.completion(**ask(base_url, list(CONVERSATION)))
    assert response.choices[0].message.content == "Hi there."
    logger.wait(1)
    msgs = delivered(gf_client, capture_server)
    assert strip(msgs) == [("user", "Say hi"), ("assistant", "Hi there.")]
    reply = msgs[-1]
    assert reply["model"] == "gpt-4o-mini-2024-07-18"  # the answering model
    props = reply["properties"]
    assert props["provider"] == "openai"
    assert props["api"] == "chat"
    assert props["finishReason"] == "stop"
    assert props["responseId"] == response.id
    assert props["litellmCallId"]
    assert props["providerUsage"]["prompt_tokens"] == CHAT_USAGE["prompt_tokens"]
    # the same vocabulary as wrap_openai's for the same call
    assert props["usage"] == SAME_CALL
    body = capture_server.requests[0]
    assert body["externalUserId"] == "u-1"
    assert body["systemPrompt"] == "You are terse."
    assert body["externalConversationId"].startswith("litellm-")


def test_acompletion_records_the_turn(attach, fake, base_url, gf_client, capture_server):
    logger = attach()
    fake.reply_text("Hi async.")

    async def main() -> None:
        response = await litellm.acompletion(**ask(base_url, list(CONVERSATION)))
        assert response.choices[0].message.content == "Hi async."
        # LiteLLM logs in a task of this loop: wait for it before the loop closes
        await asyncio.to_thread(logger.wait, 1)

    asyncio.run(main())
    msgs = delivered(gf_client, capture_server)
    assert strip(msgs) == [("user", "Say hi"), ("assistant", "Hi async.")]
    assert msgs[-1]["model"] == "gpt-4o-mini-2024-07-18"


def test_sync_stream_recorded_once_when_it_ends(attach, fake, base_url, gf_client, capture_server):
    logger = attach()
    fake.reply_text("Streamed reply here.")
    stream = litellm.completion(**ask(base_url, list(CONVERSATION)), stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    assert text == "Streamed reply here."
    logger.wait(1)
    msgs = delivered(gf_client, capture_server)
    assert strip(msgs) == [("user", "Say hi"), ("assistant", "Streamed reply here.")]
    assert msgs[-1]["properties"]["stream"] is True


def test_async_stream_recorded_once_when_it_ends(attach, fake, base_url, gf_client, capture_server):
    logger = attach()
    fake.reply_text("Async stream.")

    async def main() -> str:
        stream = await litellm.acompletion(**ask(base_url, list(CONVERSATION)), stream=True)
        parts = [chunk.choices[0].delta.content or "" async for chunk in stream]
        await asyncio.to_thread(logger.wait, 1)
        return "".join(parts)

    assert asyncio.run(main()) == "Async stream."
    msgs = delivered(gf_client, capture_server)
    assert strip(msgs) == [("user", "Say hi"), ("assistant", "Async stream.")]
    assert msgs[-1]["properties"]["stream"] is True


# -- tools ------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls_and_results(attach, fake, base_url, gf_client, capture_server, stream):
    logger = attach(external_conversation_id=f"tools-{stream}")
    fake.reply_tool_call("get_weather", {"city": "Paris"})
    fake.reply_text("Sunny in Paris.")
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]

    def call() -> Any:
        result = litellm.completion(**ask(base_url, messages, tools=[WEATHER_TOOL]), stream=stream)
        if stream:
            return litellm.stream_chunk_builder(list(result), messages=messages)
        return result

    first = call()
    tool_call = first.choices[0].message.tool_calls[0]
    assert tool_call.function.name == "get_weather"
    # what apps do right after: append the reply and the tool's result to the same list
    messages.append(first.choices[0].message.model_dump())
    messages.append({"role": "tool", "tool_call_id": tool_call.id, "content": "Sunny, 24C"})
    second = call()
    assert second.choices[0].message.content == "Sunny in Paris."
    logger.wait(2)
    msgs = delivered(gf_client, capture_server)
    assert strip(msgs) == [
        ("user", "Weather in Paris?"),
        ("tool_call", "get_weather"),
        ("observation", "get_weather"),
        ("final_response", "Sunny in Paris."),
    ]
    call_msg, observation = msgs[1], msgs[2]
    assert call_msg["input"] == {"city": "Paris"}
    assert observation["parentExternalMessageId"] == call_msg["externalMessageId"]
    assert observation["output"] == {"result": "Sunny, 24C"}


# -- failures ---------------------------------------------------------------------------


def _raised(fn: Any) -> BaseException:
    with pytest.raises(Exception) as info:
        fn()
    return info.value


@pytest.mark.parametrize("status", [400, 500])
def test_failure_raises_what_litellm_raises_and_is_recorded(
    attach, fake, base_url, gf_client, capture_server, status
):
    request = ask(base_url, list(CONVERSATION), num_retries=0, max_retries=0)
    fake.reply_error(status, "Invalid value for 'temperature'")
    bare = _raised(lambda: litellm.completion(**request))
    logger = attach(external_conversation_id=f"fail-{status}")
    fake.reply_error(status, "Invalid value for 'temperature'")
    wrapped = _raised(lambda: litellm.completion(**request))
    assert type(wrapped) is type(bare)
    assert str(wrapped) == str(bare)
    # LiteLLM maps the status by release and error type: what counts is that it is the same
    assert getattr(wrapped, "status_code", None) == getattr(bare, "status_code", None)
    logger.wait(1)
    msgs = delivered(gf_client, capture_server)
    assert kinds(msgs) == ["user", "llm"]
    error = msgs[-1]["properties"]["error"]
    assert error["type"] == type(bare).__name__
    assert "Invalid value for 'temperature'" in error["message"]
    assert msgs[-1]["properties"]["statusCode"] == bare.status_code


def test_async_failure_is_recorded(attach, fake, base_url, gf_client, capture_server):
    request = ask(base_url, list(CONVERSATION), num_retries=0, max_retries=0)

    async def fail() -> BaseException:
        try:
            await litellm.acompletion(**request)
        except Exception as exc:
            return exc
        raise AssertionError("the call should fail")

    async def main() -> tuple[BaseException, BaseException]:
        # one event loop for both: LiteLLM keeps its async HTTP clients across calls
        fake.reply_error(500, "boom")
        bare = await fail()
        logger = attach(external_conversation_id="afail")
        fake.reply_error(500, "boom")
        wrapped = await fail()
        await asyncio.to_thread(logger.wait, 1)
        return bare, wrapped

    bare, wrapped = asyncio.run(main())
    assert type(wrapped) is type(bare)
    assert str(wrapped) == str(bare)
    msgs = delivered(gf_client, capture_server)
    assert kinds(msgs) == ["user", "llm"]
    assert msgs[-1]["properties"]["error"]["type"] == type(bare).__name__


# -- identity ---------------------------------------------------------------------------


def test_litellm_metadata_and_user_are_native_ids(
    attach, fake, base_url, gf_client, capture_server
):
    logger = attach()
    litellm.completion(
        **ask(base_url, list(CONVERSATION)), metadata={"session_id": "sess-1", "user_id": "meta-u"}
    )
    litellm.completion(**ask(base_url, [{"role": "user", "content": "x"}]), user="req-u")
    logger.wait(2)
    delivered(gf_client, capture_server)
    ids = {(r["externalConversationId"], r["externalUserId"]) for r in capture_server.requests}
    assert ("sess-1", "meta-u") in ids
    assert any(user == "req-u" and conv.startswith("litellm-") for conv, user in ids)


def test_keywords_and_scope_rank_above_native_ids(
    attach, fake, base_url, gf_client, capture_server
):
    logger = attach(external_user_id="kw-user")
    with gf.conversation("scoped"):
        stream = litellm.completion(
            **ask(base_url, list(CONVERSATION)),
            metadata={"session_id": "sess-2"},
            user="req-u",
            stream=True,
        )
    # the stream is read (and LiteLLM logs it, on a thread) outside the scope: the identity
    # is the one of the call
    for _ in stream:
        pass
    logger.wait(1)
    delivered(gf_client, capture_server)
    ids = {(r["externalConversationId"], r["externalUserId"]) for r in capture_server.requests}
    assert ids == {("scoped", "kw-user")}


def test_stateless_history_lands_in_one_conversation(
    attach, fake, base_url, gf_client, capture_server
):
    logger = attach()
    messages = list(CONVERSATION)
    first = litellm.completion(**ask(base_url, messages))
    messages += [first.choices[0].message.model_dump(), {"role": "user", "content": "Again"}]
    litellm.completion(**ask(base_url, messages))
    logger.wait(2)
    msgs = delivered(gf_client, capture_server)
    assert strip(msgs) == [
        ("user", "Say hi"),
        ("assistant", "Done."),
        ("user", "Again"),
        ("assistant", "Done."),
    ]
    assert len({r["externalConversationId"] for r in capture_server.requests}) == 1


def test_unknown_keyword_fails_at_construction() -> None:
    with pytest.raises(TypeError, match="external_user"):
        GreenflashLogger(external_user="x")  # type: ignore[call-arg]


def test_rating_a_response(attach, fake, base_url, gf_client, capture_server):
    logger = attach(external_conversation_id="rated", product_id="shop")  # ratings need one
    response = litellm.completion(**ask(base_url, list(CONVERSATION)))
    logger.wait(1)
    answer = delivered(gf_client, capture_server)[-1]
    assert gf.rate(response, 5, rating_min=1, rating_max=5)  # the response object
    assert gf.rate(response.id, 4, rating_min=1, rating_max=5)  # its id
    assert gf_client.flush(10)
    with capture_server.lock:
        ratings = [
            body
            for path, body in zip(capture_server.paths, capture_server.attempts, strict=True)
            if path.endswith("/ratings")
        ]
    assert [(r["externalMessageId"], r["rating"]) for r in ratings] == [
        (answer["externalMessageId"], 5),
        (answer["externalMessageId"], 4),
    ]


# -- a wrapped OpenAI client under LiteLLM ------------------------------------------------


def test_wrapped_openai_client_under_litellm_records_once(
    attach, fake, base_url, gf_client, capture_server
):
    openai = pytest.importorskip("openai")
    from gf_integrations.openai import wrap_openai

    client = wrap_openai(openai.OpenAI(base_url=base_url, api_key="sk-test"))
    logger = attach(external_conversation_id="dedup")
    response = litellm.completion(**ask(base_url, list(CONVERSATION)), client=client)
    assert response.choices[0].message.content == "Done."
    logger.wait(1)
    # the same client, outside LiteLLM, still records (the mark does not outlive the call)
    client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "direct"}]
    )
    msgs = delivered(gf_client, capture_server)
    by_conv: dict[str, list[Any]] = {}
    for body in capture_server.requests:
        by_conv.setdefault(body["externalConversationId"], []).extend(body["messages"])
    assert strip(by_conv.pop("dedup")) == [("user", "Say hi"), ("assistant", "Done.")]
    (direct,) = by_conv.values()
    assert strip(direct) == [("user", "direct"), ("assistant", "Done.")]
    assert len(msgs) == 4


def test_wrapped_async_openai_client_under_acompletion_records_once(
    attach, fake, base_url, gf_client, capture_server
):
    openai = pytest.importorskip("openai")
    from gf_integrations.openai import wrap_openai

    logger = attach(external_conversation_id="adedup")

    async def main() -> None:
        client = wrap_openai(openai.AsyncOpenAI(base_url=base_url, api_key="sk-test"))
        response = await litellm.acompletion(**ask(base_url, list(CONVERSATION)), client=client)
        assert response.choices[0].message.content == "Done."
        await asyncio.to_thread(logger.wait, 1)

    asyncio.run(main())
    msgs = delivered(gf_client, capture_server)
    assert strip(msgs) == [("user", "Say hi"), ("assistant", "Done.")]
    assert {r["externalConversationId"] for r in capture_server.requests} == {"adedup"}

"""wrap_genai end to end: the real google-genai client over the fake Gemini REST API
(tests/helpers/fake_gemini.py, on a loopback port, JSON and SSE), our real uploader, a
real loopback capture server. Every assertion is on what reached the capture server, or
on what the caller got back from the SDK."""

from __future__ import annotations

import asyncio
import gc
import json
import types as pytypes
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("google.genai", reason="the google extra is not installed")
from google import genai
from google.genai import types

from gf_integrations.core.usage import normalize
from gf_integrations.google_genai import wrap_genai
from helpers.capture import delivered, kinds
from helpers.fake_gemini import DEFAULT_USAGE, FakeGemini, function_call, text, thought

MODEL = "gemini-2.5-flash"
SYSTEM = "You are a weather bot."
STREAMED = ["plain", "stream"]


@pytest.fixture
def fake() -> Iterator[tuple[FakeGemini, str, asyncio.AbstractEventLoop]]:
    """The fake API, its base URL, and one event loop for the test's async calls (older
    SDKs keep their async HTTP client on the loop that first used it)."""
    fake = FakeGemini()
    loop = asyncio.new_event_loop()
    try:
        with fake.serve() as base:
            yield fake, base, loop
    finally:
        loop.close()


@pytest.fixture(params=["sync", "async"])
def flavor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=STREAMED)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def config(**kwargs: Any) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(**kwargs)


class Driver:
    """One client (wrapped or bare), sync or async, plain or streamed."""

    def __init__(
        self,
        fake: tuple[FakeGemini, str],
        flavor: str,
        mode: str,
        *,
        bare: bool = False,
        vertex: bool = False,
        **wrap: Any,
    ) -> None:
        self.flavor, self.mode = flavor, mode
        self.loop = fake[2]
        raw = fake[0].client(fake[1], vertex=vertex)
        self.client = raw if bare else wrap_genai(raw, **wrap)

    def __call__(self, **kwargs: Any) -> Any:
        """The response (plain) or the list of chunks (stream)."""
        kwargs.setdefault("model", MODEL)
        if self.flavor == "async":
            return self.loop.run_until_complete(self._acall(kwargs))
        if self.mode == "plain":
            return self.client.models.generate_content(**kwargs)
        return list(self.client.models.generate_content_stream(**kwargs))

    async def _acall(self, kwargs: dict[str, Any]) -> Any:
        models = self.client.aio.models
        if self.mode == "plain":
            return await models.generate_content(**kwargs)
        return [c async for c in await models.generate_content_stream(**kwargs)]

    def text(self, result: Any) -> str:
        if self.mode == "plain":
            return str(result.text)
        return "".join(c.text or "" for c in result)


def bare_error(script: Any, flavor: str, mode: str, **call: Any) -> BaseException | None:
    """What an unwrapped client raises on this fault (None: it raises nothing)."""
    fake = FakeGemini()
    script(fake)
    loop = asyncio.new_event_loop()
    try:
        with fake.serve() as base:
            Driver((fake, base, loop), flavor, mode, bare=True)(**call)
    except Exception as exc:
        return exc
    finally:
        loop.close()
    return None


# -- the client and its types -------------------------------------------------------------


def test_returns_the_same_client_and_the_sdk_objects(gf_client, capture_server, fake):
    raw = fake[0].client(fake[1])
    models, aio_models = raw.models, raw.aio.models
    client = wrap_genai(raw, external_conversation_id="types")
    assert client is raw
    assert type(client) is genai.Client
    assert wrap_genai(client) is client  # twice: one layer
    assert client.models is models
    assert client.aio.models is aio_models
    assert type(models).generate_content is not models.generate_content  # instance only
    assert "generate_content" not in vars(genai.models.Models) or True
    r = client.models.generate_content(model=MODEL, contents="hi")
    assert type(r) is types.GenerateContentResponse
    stream = client.models.generate_content_stream(model=MODEL, contents="hi")
    assert isinstance(stream, pytypes.GeneratorType)
    chunks = list(stream)
    assert all(type(c) is types.GenerateContentResponse for c in chunks)
    assert "".join(c.text for c in chunks) == "Answer 1"
    # another client of the same class is untouched
    other = fake[0].client(fake[1])
    assert "generate_content" not in vars(other.models)
    msgs = delivered(gf_client, capture_server)
    assert kinds(msgs) == ["user", "assistant"]  # the same prompt and answer, once
    assert len(fake[0].requests) == 2


def test_bad_arguments_fail_loudly(fake):
    with pytest.raises(TypeError, match="wrap_genai"):
        wrap_genai(object())
    with pytest.raises(TypeError, match="GreenflashClient"):
        wrap_genai(fake[0].client(fake[1]), client="nope")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unexpected keyword argument 'user'"):
        wrap_genai(fake[0].client(fake[1]), user="u")  # type: ignore[call-arg]


# -- mapping -------------------------------------------------------------------------------


def test_plain_turn(gf_client, capture_server, fake, flavor, mode):
    ask = Driver(fake, flavor, mode, external_user_id="u1", properties={"app": "demo"})
    result = ask(contents="Weather?", config=config(system_instruction=SYSTEM))
    assert ask.text(result) == "Answer 1"
    msgs = delivered(gf_client, capture_server)
    assert kinds(msgs) == ["user", "assistant"]
    req = capture_server.requests[0]
    assert req["systemPrompt"] == SYSTEM
    assert req["externalUserId"] == "u1"
    assert req["externalConversationId"].startswith("gemini-")
    assert req["properties"] == {"app": "demo"}
    question, reply = msgs
    assert question["content"] == "Weather?"
    assert reply["content"] == "Answer 1"
    assert reply["parentExternalMessageId"] == question["externalMessageId"]
    assert reply["model"] == MODEL + "-001"  # the model that answered (modelVersion)
    props = reply["properties"]
    raw = props["providerUsage"]  # the SDK's usage_metadata, as it came
    assert raw["prompt_token_count"] == DEFAULT_USAGE["promptTokenCount"]
    assert raw["candidates_token_count"] == DEFAULT_USAGE["candidatesTokenCount"]
    assert raw["total_token_count"] == DEFAULT_USAGE["totalTokenCount"]
    # in the one vocabulary: Gemini's thoughts are output tokens too
    assert props["usage"] == normalize("gemini", raw)
    # (as far as the installed SDK parses them: 1.4.0 has no thoughts_token_count)
    assert props["usage"]["outputTokens"] == DEFAULT_USAGE["candidatesTokenCount"] + (
        raw.get("thoughts_token_count") or 0
    )
    assert props["finishReason"] == "STOP"
    assert props["provider"] == "gemini"
    assert props["api"] == f"generate_content{'_stream' if mode == 'stream' else ''}"
    assert props["latencyMs"] >= 0
    rid = getattr(result if mode == "plain" else result[0], "response_id", None)
    if rid is not None:  # older SDKs do not read it
        assert props["responseId"] == rid
    assert "partial" not in props
    if mode == "stream":
        assert props["stream"] is True
        assert props["timeToFirstTokenMs"] >= 0
    # what the API got is what the caller sent
    body = fake[0].requests[0]
    assert body["contents"] == [{"role": "user", "parts": [{"text": "Weather?"}]}]
    assert body["systemInstruction"]["parts"] == [{"text": SYSTEM}]


def test_vertex_ai_over_the_same_fake(gf_client, capture_server, fake, flavor, mode):
    ask = Driver(fake, flavor, mode, vertex=True, external_conversation_id=f"vx-{flavor}-{mode}")
    assert ask.text(ask(contents="Hi Vertex")) == "Answer 1"
    msgs = delivered(gf_client, capture_server)
    assert [m["content"] for m in msgs] == ["Hi Vertex", "Answer 1"]
    assert msgs[1]["properties"]["provider"] == "vertex_ai"
    assert (
        "/projects/fake-project/locations/us-central1/publishers/google/models/"
        in (fake[0].paths[0])
    )


def test_thoughts_and_function_calls_then_the_answer(gf_client, capture_server, fake, flavor, mode):
    """A manual tool loop: the caller runs the function and sends its functionResponse."""
    gem = fake[0]
    ask = Driver(fake, flavor, mode, external_conversation_id=f"tools-{flavor}-{mode}")
    gem.queue(
        thought("The user wants weather and time."),
        text("Let me check both."),
        function_call("get_weather", {"city": "Paris", "units": ["C"]}),
        function_call("get_time", {"tz": "CET"}),
        finish_reason="STOP",
    )
    gem.queue(text("Sunny, 21 C; the clock is broken."))
    tools = [
        types.Tool(
            function_declarations=[
                types.FunctionDeclaration(name="get_weather", description="Weather"),
                types.FunctionDeclaration(name="get_time", description="Time"),
            ]
        )
    ]
    cfg = config(
        system_instruction=SYSTEM,
        tools=tools,
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    history: list[Any] = [types.Content(role="user", parts=[types.Part(text="Weather and time?")])]
    first = ask(contents=list(history), config=cfg)
    if mode == "plain":
        history.append(first.candidates[0].content)
    else:  # the chunks' contents, one per chunk, as chats resend them
        history.extend(c.candidates[0].content for c in first)
    history.append(
        types.Content(
            role="user",
            parts=[
                types.Part.from_function_response(
                    name="get_weather", response={"result": "sunny, 21C"}
                ),
                types.Part.from_function_response(
                    name="get_time", response={"error": "clock down"}
                ),
            ],
        )
    )
    ask(contents=history, config=cfg)
    msgs = delivered(gf_client, capture_server)
    expected = [
        "user",
        "thought",
        "thought",
        "tool_call",
        "tool_call",
        "observation",
        "tool_error",
        "final_response",
    ]
    assert kinds(msgs) == expected
    _, reasoning, said, call_a, call_b, obs, err, final = msgs
    assert reasoning["content"] == "The user wants weather and time."
    assert reasoning["properties"] == {"kind": "reasoning"}
    assert said["content"] == "Let me check both."
    assert call_a["toolName"] == "get_weather"
    assert call_a["input"] == {"city": "Paris", "units": ["C"]}
    assert call_b["toolName"] == "get_time"
    assert call_b["input"] == {"tz": "CET"}
    assert call_a["parentExternalMessageId"] == said["externalMessageId"]
    assert obs["parentExternalMessageId"] == call_a["externalMessageId"]
    assert obs["toolName"] == "get_weather"
    assert obs["output"] == {"result": "sunny, 21C"}
    assert err["parentExternalMessageId"] == call_b["externalMessageId"]
    assert err["output"] == {"error": "clock down"}
    assert final["content"] == "Sunny, 21 C; the clock is broken."
    # the thought signature never leaves the process
    assert "c2lnbmF0dXJlLXNlY3JldA" not in json.dumps(capture_server.requests)


def get_weather(city: str) -> str:
    """Weather for a city."""
    return f"sunny in {city}"


def get_time(tz: str) -> str:
    """The time in a time zone."""
    raise RuntimeError("clock down")


# the SDK reads the functions' signatures for their declarations; older releases cannot
# resolve the string annotations of `from __future__ import annotations`
get_weather.__annotations__ = {"city": str, "return": str}
get_time.__annotations__ = {"tz": str, "return": str}


def test_automatic_function_calling_records_each_call_and_result(
    gf_client, capture_server, fake, flavor, mode
):
    gem = fake[0]
    gem.queue(function_call("get_weather", {"city": "Paris"}))
    gem.queue(function_call("get_time", {"tz": "CET"}))
    gem.queue(text("Sunny in Paris; no clock."))
    ask = Driver(fake, flavor, mode, external_conversation_id=f"afc-{flavor}-{mode}")
    result = ask(
        contents="Weather and time in Paris?", config=config(tools=[get_weather, get_time])
    )
    assert ask.text(result) == "Sunny in Paris; no clock."
    assert len(gem.requests) == 3  # the SDK ran both functions itself
    msgs = delivered(gf_client, capture_server)
    assert kinds(msgs) == [
        "user",
        "tool_call",
        "observation",
        "tool_call",
        "tool_error",
        "final_response",
    ]
    question, call_w, obs, call_t, err, final = msgs
    assert call_w["input"] == {"city": "Paris"}
    assert obs["output"] == {"result": "sunny in Paris"}
    assert obs["parentExternalMessageId"] == call_w["externalMessageId"]
    assert call_t["input"] == {"tz": "CET"}
    assert "clock down" in err["output"]["error"]
    assert err["parentExternalMessageId"] == call_t["externalMessageId"]
    assert final["content"] == "Sunny in Paris; no clock."
    assert final["parentExternalMessageId"] == question["externalMessageId"]


def _chat(loop: asyncio.AbstractEventLoop, flavor: str, mode: str, message: str, chat: Any) -> str:
    if flavor == "sync":
        if mode == "plain":
            return str(chat.send_message(message).text)
        return "".join(c.text or "" for c in chat.send_message_stream(message))

    async def run() -> str:
        if mode == "plain":
            return str((await chat.send_message(message)).text)
        return "".join([c.text or "" async for c in await chat.send_message_stream(message)])

    return loop.run_until_complete(run())


def test_chat_turns_recorded_once_with_history_once(gf_client, capture_server, fake, flavor, mode):
    raw = fake[0].client(fake[1])
    client = wrap_genai(raw)
    chats = client.chats if flavor == "sync" else client.aio.chats
    chat = chats.create(model=MODEL, config=config(system_instruction=SYSTEM))
    answers = [_chat(fake[2], flavor, mode, f"question {n}", chat) for n in (1, 2, 3)]
    assert answers == ["Answer 1", "Answer 2", "Answer 3"]
    msgs = delivered(gf_client, capture_server)
    assert [m["content"] for m in msgs] == [
        x for n in (1, 2, 3) for x in (f"question {n}", f"Answer {n}")
    ]
    assert kinds(msgs) == ["user", "assistant"] * 3
    assert len({r["externalConversationId"] for r in capture_server.requests}) == 1
    assert len([r for r in capture_server.requests if r.get("systemPrompt")]) == 1
    # the SDK sent the growing history each turn (a streamed answer as one content per chunk)
    sizes = [len(b["contents"]) for b in fake[0].requests]
    assert sizes == ([1, 3, 5] if mode == "plain" else [1, 4, 7])


def test_chat_with_automatic_function_calling(gf_client, capture_server, fake):
    gem = fake[0]
    gem.queue(function_call("get_weather", {"city": "Oslo"}))
    gem.queue(text("Sunny in Oslo."))
    client = wrap_genai(gem.client(fake[1]), external_conversation_id="chat-afc")
    chat = client.chats.create(model=MODEL, config=config(tools=[get_weather]))
    assert chat.send_message("Weather in Oslo?").text == "Sunny in Oslo."
    assert chat.send_message("Thanks!").text == "Answer 2"
    msgs = delivered(gf_client, capture_server)
    assert kinds(msgs) == [
        "user",
        "tool_call",
        "observation",
        "final_response",
        "user",
        "assistant",
    ]
    assert msgs[2]["output"] == {"result": "sunny in Oslo"}


def test_blocked_prompt_and_bad_parts_are_marked(gf_client, capture_server, fake):
    gem = fake[0]
    gem.queue(block_reason="SAFETY")
    gem.queue({"someFuturePart": {"x": 1}}, text("ok"))
    client = wrap_genai(gem.client(fake[1]), external_conversation_id="marks")
    client.models.generate_content(model=MODEL, contents="bad words")
    image = types.Part.from_bytes(data=b"\x89PNG-not-really", mime_type="image/png")
    client.models.generate_content(
        model=MODEL,
        contents=[
            image,
            "What is this?",
            {"inline_data": {"mime_type": "audio/wav", "data": "AAAA"}},
        ],
    )
    msgs = delivered(gf_client, capture_server)
    assert kinds(msgs) == ["user", "assistant", "user", "assistant"]
    assert msgs[1]["content"] == "[prompt blocked: SAFETY]"
    assert msgs[1]["properties"]["refusal"] is True
    assert msgs[2]["content"] == "[image]\nWhat is this?\n[audio]"
    assert "PNG-not-really" not in json.dumps(capture_server.requests)
    # a part the SDK does not know arrives empty: kept, marked, never guessed
    assert msgs[3]["content"].startswith("[unsupported part]")
    assert msgs[3]["content"].endswith("ok")


# -- errors and streams ended early ---------------------------------------------------------


def test_errors_raise_what_the_bare_client_raises_and_are_recorded(
    gf_client, capture_server, fake, flavor, mode
):
    def script(f: FakeGemini) -> None:
        f.queue_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded")

    bare = bare_error(script, flavor, mode, contents="hi")
    assert bare is not None
    script(fake[0])
    ask = Driver(fake, flavor, mode, external_conversation_id=f"err-{flavor}-{mode}")
    with pytest.raises(Exception) as info:
        ask(contents="hi")
    assert type(info.value) is type(bare)
    assert str(info.value) == str(bare)
    msgs = delivered(gf_client, capture_server)
    assert kinds(msgs) == ["user", "llm"]
    assert msgs[1]["properties"]["statusCode"] == 429
    assert str(bare) in msgs[1]["content"]


def test_stream_error_mid_way_is_partial(gf_client, capture_server, fake, flavor):
    def script(f: FakeGemini) -> None:
        f.queue(text("A long answer in pieces."), stream_error_after=2)

    bare = bare_error(script, flavor, "stream", contents="hi")
    script(fake[0])
    ask = Driver(fake, flavor, "stream", external_conversation_id=f"mid-{flavor}")
    if bare is None:  # older SDKs end the stream quietly on an error chunk: so does ours
        assert ask.text(ask(contents="hi")) == "A long a"
    else:
        with pytest.raises(Exception) as info:
            ask(contents="hi")
        assert type(info.value) is type(bare)
        assert str(info.value) == str(bare)
    msgs = delivered(gf_client, capture_server)
    assert kinds(msgs) == ["user", "assistant"]
    assert msgs[1]["content"] == "A long a"  # the two chunks before the error
    props = msgs[1]["properties"]
    assert props["partial"] is True  # no finishReason arrived
    assert props.get("streamEnd") == ("error" if bare is not None else None)


def test_stream_closed_early_is_recorded_once_as_partial(gf_client, capture_server, fake, flavor):
    fake[0].queue(text("A long answer in pieces."))
    client = wrap_genai(fake[0].client(fake[1]), external_conversation_id=f"early-{flavor}")

    async def amain() -> None:
        stream = await client.aio.models.generate_content_stream(model=MODEL, contents="hi")
        async for _ in stream:
            break
        await stream.aclose()

    if flavor == "async":
        asyncio.run(amain())
    else:
        stream = client.models.generate_content_stream(model=MODEL, contents="hi")
        next(stream)
        stream.close()
    # never iterated: no request went out, nothing is recorded
    unused = client.models.generate_content_stream(model=MODEL, contents="never")
    del unused
    gc.collect()
    msgs = delivered(gf_client, capture_server)
    assert kinds(msgs) == ["user", "assistant"]
    assert msgs[1]["content"] == "A lo"
    assert msgs[1]["properties"]["partial"] is True
    assert msgs[1]["properties"]["streamEnd"] == "closed"
    assert len(fake[0].requests) == 1


def test_stateless_growing_history_is_one_conversation(gf_client, capture_server, fake):
    client = wrap_genai(fake[0].client(fake[1]))
    history: list[Any] = []
    for turn in (1, 2, 3):
        history.append({"role": "user", "parts": [{"text": f"q{turn}"}]})
        r = client.models.generate_content(model=MODEL, contents=list(history))
        history.append(r.candidates[0].content)
    msgs = delivered(gf_client, capture_server)
    assert [m["content"] for m in msgs] == ["q1", "Answer 1", "q2", "Answer 2", "q3", "Answer 3"]
    assert len({r["externalConversationId"] for r in capture_server.requests}) == 1


def test_a_disabled_client_passes_calls_through_untouched(make_client, capture_server, fake):
    off = make_client(enabled=False)
    client = wrap_genai(fake[0].client(fake[1]), client=off)
    assert client.models.generate_content(model=MODEL, contents="hi").text == "Answer 1"
    assert (
        "".join(c.text for c in client.models.generate_content_stream(model=MODEL, contents="hi"))
        == "Answer 1"
    )
    assert off.flush(5)
    assert capture_server.requests == []

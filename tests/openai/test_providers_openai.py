"""wrap_openai under the frameworks that drive an OpenAI client the user handed them.

- The OpenAI Agents SDK (``set_default_openai_client(wrap_openai(AsyncOpenAI(...)))``, an
  agent with a function tool, ``Runner.run``, ``run_sync`` and ``run_streamed``, on the Responses
  and the Chat Completions API). Its own tracing is switched off: nothing leaves the process.
- A LangChain ``ChatOpenAI`` whose own client the user wrapped: one record per call, with
  or without the LangChain callback handler.

The model talks to ``tests/helpers/fake_openai.py`` (MockTransport, or a loopback port for
the streamed rows); every assertion is on what the capture server received. The support
matrix runs this file in its ``openai-agents`` cell (newest releases); the ``openai``
cells leave it out: both frameworks need a newer openai than our floor. Rows whose
framework is not installed skip.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from gf_integrations.openai import wrap_openai
from helpers.capture import delivered, kinds
from helpers.fake_openai import FakeOpenAI
from helpers.usage import SAME_CALL
from openai import AsyncOpenAI

SYSTEM = "You are a weather bot."
QUESTION = "weather in Paris?"
ANSWER = "Sunny in Paris, 21 C."
RESOLVED = "gpt-4o-mini-2024-07-18"


def usage_of(api: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """The usage recorded for the request ``body`` (None: the fake API gave none)."""
    if api == "responses":
        return SAME_CALL
    if body.get("stream") and not (body.get("stream_options") or {}).get("include_usage"):
        return None
    return SAME_CALL


# -- the OpenAI Agents SDK ------------------------------------------------------------------


@pytest.fixture
def agents_sdk() -> Iterator[Any]:
    """The Agents SDK with its tracing off (it stays off); its default client and API are
    restored afterwards."""
    agents = pytest.importorskip("agents", reason="the OpenAI Agents SDK is not installed")
    from agents.models import _openai_shared as shared
    from agents.tracing import get_trace_provider

    saved = (shared.get_default_openai_client(), shared.get_use_responses_by_default())
    agents.set_tracing_disabled(True)
    try:
        yield agents
    finally:
        shared.set_default_openai_client(saved[0])  # type: ignore[arg-type]
        shared.set_use_responses_by_default(saved[1])
        get_trace_provider().set_disabled(True)


@pytest.mark.parametrize("api", ["responses", "chat_completions"])
@pytest.mark.parametrize("mode", ["run", "run_sync", "run_streamed"])
def test_agents_sdk_over_wrapped_client(agents_sdk, api, mode, gf_client, capture_server):
    agents = agents_sdk
    streamed = mode == "run_streamed"
    fake = FakeOpenAI()
    fake.reply_tool_call("get_weather", {"city": "Paris"}).reply_text(ANSWER)

    @agents.function_tool
    def get_weather(city: str) -> str:
        """Weather for a city."""
        return f"Sunny in {city}"

    agent = agents.Agent(
        name="weather", instructions=SYSTEM, tools=[get_weather], model="gpt-4o-mini"
    )

    def use(base_url: str, http_client: Any) -> None:
        client = AsyncOpenAI(
            api_key="sk-test", base_url=base_url, http_client=http_client, max_retries=0
        )
        agents.set_default_openai_client(wrap_openai(client), use_for_tracing=False)
        agents.set_default_openai_api(api)

    async def main() -> str:
        if not streamed:
            return str((await agents.Runner.run(agent, QUESTION)).final_output)
        result = agents.Runner.run_streamed(agent, QUESTION)
        async for _ in result.stream_events():
            pass
        return str(result.final_output)

    with ExitStack() as stack:
        if streamed:  # real sockets for the SSE rows
            use(stack.enter_context(fake.serve()), None)
        else:
            use(fake.base_url, fake.async_http_client())
        if mode == "run_sync":
            out = str(agents.Runner.run_sync(agent, QUESTION).final_output)
        else:
            out = asyncio.run(main())
    assert out == ANSWER
    sent = fake.bodies
    assert len(sent) == 2
    assert all(bool(b.get("stream")) is streamed for b in sent)
    # the tool result went back to the API in that API's own shape
    if api == "responses":
        assert sent[1]["input"][-1]["type"] == "function_call_output"
    else:
        assert sent[1]["messages"][-1]["role"] == "tool"

    msgs = delivered(gf_client, capture_server)
    assert kinds(msgs) == ["user", "tool_call", "observation", "final_response"]
    user, call, obs, final = msgs
    assert user["content"] == QUESTION
    assert call["toolName"] == "get_weather"
    assert call["input"] == {"city": "Paris"}
    assert call["parentExternalMessageId"] == user["externalMessageId"]
    assert obs["toolName"] == "get_weather"
    assert obs["output"] == {"result": "Sunny in Paris"}
    assert obs["parentExternalMessageId"] == call["externalMessageId"]
    assert final["content"] == ANSWER
    assert final["parentExternalMessageId"] == user["externalMessageId"]
    for reply, body in ((call, sent[0]), (final, sent[1])):
        assert reply["model"] == RESOLVED
        props = reply["properties"]
        assert props["api"] == ("responses" if api == "responses" else "chat")
        assert props.get("usage") == usage_of(api, body)
        assert props.get("stream", False) is streamed
    assert {b["externalConversationId"] for b in capture_server.requests} == {
        capture_server.requests[0]["externalConversationId"]
    }
    assert [b["systemPrompt"] for b in capture_server.requests if "systemPrompt" in b] == [SYSTEM]


# -- a LangChain ChatOpenAI whose own client the user wrapped ------------------------------------


@pytest.mark.parametrize("streaming", [False, True], ids=["invoke", "stream"])
@pytest.mark.parametrize("with_handler", [False, True], ids=["wrapped", "wrapped+handler"])
def test_chat_openai_with_wrapped_client_logs_once(
    streaming, with_handler, gf_client, capture_server
):
    pytest.importorskip("langchain_openai", reason="langchain-openai is not installed")
    from langchain_openai import ChatOpenAI

    from gf_integrations.langchain import GreenflashCallbackHandler

    fake = FakeOpenAI()
    fake.reply_text(ANSWER)
    llm = ChatOpenAI(
        model="gpt-4o-mini",
        api_key="sk-test",
        base_url=fake.base_url,
        http_client=fake.http_client(),
        streaming=streaming,
        stream_usage=True,
        max_retries=0,
    )
    wrap_openai(llm.root_client)
    callbacks = [GreenflashCallbackHandler()] if with_handler else []
    reply = llm.invoke([("system", SYSTEM), ("user", QUESTION)], config={"callbacks": callbacks})
    assert reply.content == ANSWER
    msgs = delivered(gf_client, capture_server)
    # one record of the call: the LangChain handler's when it runs, else the wrapper's
    assert kinds(msgs) == ["user", "assistant"]
    assert msgs[0]["content"] == QUESTION
    assert msgs[1]["content"] == ANSWER
    assert msgs[1]["model"] == RESOLVED
    assert msgs[1]["parentExternalMessageId"] == msgs[0]["externalMessageId"]
    # the same usage whichever integration recorded the call
    assert msgs[1]["properties"]["usage"] == SAME_CALL
    assert ("api" in msgs[1]["properties"]) is not with_handler  # whose record it is
    assert [b["systemPrompt"] for b in capture_server.requests if "systemPrompt" in b] == [SYSTEM]

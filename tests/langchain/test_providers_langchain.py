"""LangChain and LangGraph agents over the real provider classes, on fake provider servers.

Each row runs a one-tool agent turn through ``langchain_openai.ChatOpenAI``,
``AzureChatOpenAI`` or ``langchain_anthropic.ChatAnthropic`` talking the real wire format to
``tests/helpers/fake_openai.py`` / ``fake_anthropic.py`` (OpenAI on ``httpx.MockTransport``,
Anthropic on a loopback port), and asserts the exact sequence the capture server received.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import warnings
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest

pytest.importorskip("langchain_openai")
pytest.importorskip("langchain_anthropic")
pytest.importorskip("langchain")

from langchain.agents import create_agent
from langchain_anthropic import ChatAnthropic
from langchain_core.tools import tool
from langchain_openai import AzureChatOpenAI, ChatOpenAI
from test_langchain import delivered, kinds, prompts_of

from gf_integrations.langchain import GreenflashCallbackHandler, run_state_size
from helpers.fake_anthropic import FakeAnthropic, text, tool_use
from helpers.fake_openai import FakeOpenAI
from helpers.usage import SAME_CALL

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from langgraph.prebuilt import create_react_agent

# asyncio.create_task(context=...) (Python 3.11): what carries a run's callbacks into a
# model call that create_agent's async node makes without passing its config
ASYNCIO_TASK_CONTEXT = "context" in inspect.signature(asyncio.create_task).parameters
SYSTEM = "You are a weather bot."
QUESTION = "weather in Paris?"
ANSWER = "Sunny in Paris, 21 C."


def _reports(module: str, field: str) -> bool:
    """Whether the installed LangChain provider package reads ``field`` of the API's usage
    into its UsageMetadata (a feature probe on its source)."""
    try:
        return field in inspect.getsource(importlib.import_module(module))
    except (ImportError, OSError, TypeError):
        return False


def langchain_usage(provider: str) -> dict[str, int]:
    """The usage LangChain records for the fakes' call: the same as wrap_openai's and
    wrap_anthropic's (helpers/usage.py), less what the installed provider package drops
    before it reaches us (cache writes: langchain-openai 1.0; thinking tokens:
    langchain-anthropic 1.0)."""
    usage = dict(SAME_CALL)
    if provider == "anthropic":
        if not _reports("langchain_anthropic.chat_models", "thinking_tokens"):
            usage.pop("reasoningTokens")
    elif not _reports("langchain_openai.chat_models.base", "cache_write_tokens"):
        usage.pop("cacheWriteTokens")
    return usage


# what each provider's answering model is called in its response
EXPECTED = {
    "openai": "gpt-4o-mini-2024-07-18",
    "azure": "gpt-4o-mini-2024-07-18",
    "openai-responses": "gpt-4o-mini-2024-07-18",
    "anthropic": "claude-haiku-4-5-20251001",
}


@pytest.fixture(autouse=True)
def _no_leaks() -> Iterator[None]:
    before = run_state_size()
    yield
    assert run_state_size() == before, "per-run state leaked"


@tool
def get_weather(city: str) -> str:
    """Weather for a city."""
    return f"Sunny in {city}"


class Provider:
    """One provider class over its fake server, scripted for a one-tool turn."""

    def __init__(self, name: str, streaming: bool, stack: ExitStack) -> None:
        self.name = name
        if name == "anthropic":
            self.anthropic = FakeAnthropic(resolve={"claude-haiku-4-5": EXPECTED[name]})
            self.anthropic.queue(
                text("Let me check."), tool_use("get_weather", {"city": "Paris"}, id="toolu_1")
            )
            self.anthropic.queue(text(ANSWER))
            url = stack.enter_context(self.anthropic.serve())
            self.model: Any = ChatAnthropic(
                model_name="claude-haiku-4-5",
                base_url=url,
                api_key="sk-ant-test",
                max_retries=0,
                streaming=streaming,
                timeout=10,
                stop=None,
            )
            return
        self.openai = FakeOpenAI()
        self.openai.reply_tool_call("get_weather", {"city": "Paris"}, text="Let me check.")
        self.openai.reply_text(ANSWER)
        common: dict[str, Any] = {
            "api_key": "sk-test",
            "http_client": self.openai.http_client(),
            "http_async_client": self.openai.async_http_client(),
            "max_retries": 0,
            "streaming": streaming,
            "stream_usage": True,
        }
        if name == "azure":
            self.openai.deployments["chat-prod"] = "gpt-4o-mini"
            self.model = AzureChatOpenAI(
                azure_endpoint="http://fake-openai.test",
                azure_deployment="chat-prod",
                api_version="2024-10-21",
                **common,
            )
        else:
            self.model = ChatOpenAI(
                model="gpt-4o-mini",
                base_url=self.openai.base_url,
                use_responses_api=name == "openai-responses",
                **common,
            )

    def sent(self) -> list[dict[str, Any]]:
        """Request bodies the provider API received."""
        if self.name == "anthropic":
            return list(self.anthropic.requests)
        return self.openai.bodies

    def paths(self) -> list[str]:
        if self.name == "anthropic":
            return list(self.anthropic.paths)
        return [r.path for r in self.openai.requests]


def build_agent(kind: str, model: Any) -> Any:
    if kind == "create_agent":
        return create_agent(model, [get_weather], system_prompt=SYSTEM)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return create_react_agent(model, [get_weather], prompt=SYSTEM)


def run(agent: Any, mode: str, config: dict[str, Any]) -> str:
    """Drive the agent as ``mode`` says; return the final answer the caller saw."""
    inputs = {"messages": [("user", QUESTION)]}
    if mode == "invoke":
        return str(agent.invoke(inputs, config=config)["messages"][-1].text)
    if mode == "ainvoke":
        out = asyncio.run(agent.ainvoke(inputs, config=config))
        return str(out["messages"][-1].text)
    if mode == "stream":
        pieces = []
        for chunk, meta in agent.stream(inputs, config=config, stream_mode="messages"):
            if meta.get("langgraph_node") in ("model", "agent"):
                pieces.append(chunk.text)
        return "".join(pieces)

    async def events() -> str:
        pieces = []
        async for ev in agent.astream_events(inputs, config=config, version="v2"):
            if ev["event"] == "on_chat_model_stream":
                pieces.append(ev["data"]["chunk"].text)
        return "".join(pieces)

    return asyncio.run(events())


MODES = ["invoke", "ainvoke", "stream", "astream_events"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("agent_kind", ["create_agent", "create_react_agent"])
@pytest.mark.parametrize("provider", ["openai", "openai-responses", "azure", "anthropic"])
def test_agent_turn_over_provider(provider, agent_kind, mode, gf_client, capture_server):
    if agent_kind == "create_agent" and mode.startswith("a") and not ASYNCIO_TASK_CONTEXT:
        pytest.skip(
            "Python < 3.11 asyncio has no task context: create_agent's async model node "
            "calls the model without its config, so no callback (ours or astream_events') "
            "sees the model"
        )
    streaming = mode in ("stream", "astream_events")
    with ExitStack() as stack:
        prov = Provider(provider, streaming, stack)
        agent = build_agent(agent_kind, prov.model)
        seen = run(agent, mode, {"callbacks": [GreenflashCallbackHandler()]})
        msgs = delivered(capture_server, gf_client)
    # the caller's answer is untouched (streams: every text piece, both model calls)
    if streaming:
        assert seen.endswith(ANSWER)
        assert "Let me check." in seen
    else:
        assert seen == ANSWER
    sent = prov.sent()
    assert len(sent) == 2
    assert all(bool(b.get("stream")) is streaming for b in sent)
    if provider == "azure":
        assert prov.paths()[0] == "/openai/deployments/chat-prod/chat/completions"
    model, usage = EXPECTED[provider], langchain_usage(provider)
    assert kinds(msgs) == ["user", "thought", "tool_call", "observation", "final_response"]
    user, thought, call, obs, final = msgs
    assert user["content"] == QUESTION
    assert thought["content"] == "Let me check."
    assert call["toolName"] == "get_weather"
    assert call["input"] == {"city": "Paris"}
    # the text said with the tool call is a thought; the call hangs under it
    assert thought["parentExternalMessageId"] == user["externalMessageId"]
    assert call["parentExternalMessageId"] == thought["externalMessageId"]
    assert obs["toolName"] == "get_weather"
    assert obs["output"] == {"result": "Sunny in Paris"}
    assert obs["parentExternalMessageId"] == call["externalMessageId"]
    assert final["content"] == ANSWER
    assert final["parentExternalMessageId"] == user["externalMessageId"]
    assert call["model"] == model
    assert "properties" not in call  # the call's usage is on its thought
    for reply in (thought, final):
        assert reply["model"] == model
        props = reply["properties"]
        assert props["provider"] == provider.removesuffix("-responses")
        assert props["usage"] == usage
    # one usage per model call: the agent run that holds both carries none
    assert [m for m in msgs if "usage" in m.get("properties", {})] == [thought, final]
    # each API's own word, as wrap_openai / wrap_anthropic record it
    finish = {"anthropic": ("tool_use", "end_turn"), "openai-responses": ("completed",) * 2}
    expected_finish = finish.get(provider, ("tool_calls", "stop"))
    assert (thought["properties"]["finishReason"], final["properties"]["finishReason"]) == (
        expected_finish
    )
    assert prompts_of(capture_server) == [SYSTEM]


# -- a retrieval chain over a real ChatOpenAI and OpenAIEmbeddings --------------------------

DOCS = ["Paris is the capital of France.", "Rome is the capital of Italy."]


@pytest.mark.parametrize("mode", ["invoke", "ainvoke", "stream", "astream_events"])
def test_retrieval_chain_over_chat_openai(mode, gf_client, capture_server):
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnablePassthrough
    from langchain_core.vectorstores import InMemoryVectorStore
    from langchain_openai import OpenAIEmbeddings

    fake = FakeOpenAI()
    clients = {"http_client": fake.http_client(), "http_async_client": fake.async_http_client()}
    embeddings = OpenAIEmbeddings(
        model="text-embedding-3-small",
        api_key="sk-test",
        base_url=fake.base_url,
        check_embedding_ctx_length=False,  # no tiktoken download
        **clients,
    )
    store = InMemoryVectorStore.from_texts(DOCS, embeddings)
    llm = ChatOpenAI(
        model="gpt-4o-mini",
        api_key="sk-test",
        base_url=fake.base_url,
        streaming=mode in ("stream", "astream_events"),
        stream_usage=True,
        max_retries=0,
        **clients,
    )
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer from this context: {context}"), ("human", "{question}")]
    )
    chain = (
        {
            "context": store.as_retriever(search_kwargs={"k": 1})
            | (lambda docs: "\n".join(d.page_content for d in docs)),
            "question": RunnablePassthrough(),
        }
        | prompt
        | llm
        | StrOutputParser()
    )
    fake.reply_text("Paris.")
    question = "What is the capital of France?"
    config: dict[str, Any] = {"callbacks": [GreenflashCallbackHandler()]}
    if mode == "invoke":
        out = chain.invoke(question, config=config)
    elif mode == "ainvoke":
        out = asyncio.run(chain.ainvoke(question, config=config))
    elif mode == "stream":
        out = "".join(chain.stream(question, config=config))
    else:

        async def events() -> str:
            pieces = []
            async for ev in chain.astream_events(question, config=config, version="v2"):
                if ev["event"] == "on_chat_model_stream":
                    pieces.append(ev["data"]["chunk"].text)
            return "".join(pieces)

        out = asyncio.run(events())
    assert out == "Paris."
    # the right document reached the model: the embeddings really drove the retrieval
    (chat_body,) = fake.bodies_for("/chat/completions")
    assert chat_body["messages"][0]["content"] == f"Answer from this context: {DOCS[0]}"

    msgs = delivered(capture_server, gf_client)
    assert kinds(msgs) == ["user", "retrieval", "assistant"]
    user, retrieval, answer = msgs
    assert user["content"] == question
    assert retrieval["content"] == question
    assert retrieval["parentExternalMessageId"] == user["externalMessageId"]
    assert [d["text"] for d in retrieval["output"]["documents"]] == [DOCS[0]]
    assert retrieval["properties"]["retriever"] == "VectorStoreRetriever"
    assert answer["content"] == "Paris."
    assert answer["context"] == DOCS[0]
    assert answer["model"] == EXPECTED["openai"]
    assert answer["parentExternalMessageId"] == user["externalMessageId"]
    assert answer["properties"]["usage"] == langchain_usage("openai")
    # the system prompt is the template, its variable the retrieved text
    (prompt_sent,) = prompts_of(capture_server)
    assert prompt_sent["components"][0]["content"] == "Answer from this context: {{context}}"
    assert prompt_sent["variables"] == {"context": DOCS[0]}

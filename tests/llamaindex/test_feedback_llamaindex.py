"""gf.rate on what LlamaIndex returned (a query Response, an agent's output, a chat
response), through the real local collector."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette")

from test_llamaindex import needs_scripted_agents

import gf_integrations as gf
from helpers.feedback import default_client, rated


@pytest.fixture
def client(collector: Any) -> Iterator[gf.GreenflashClient]:
    with default_client(collector) as c:
        yield c


@needs_scripted_agents
def test_llamaindex_response_agent_output_and_chat_response(client, collector):
    from llama_index.core import Document, Settings, VectorStoreIndex
    from llama_index.core.agent.workflow import FunctionAgent
    from llama_index.core.chat_engine import SimpleChatEngine
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.llms import MockLLM
    from llama_index.core.llms.mock import MockFunctionCallingLLM
    from test_llamaindex import broken, get_weather, scripted_tools

    from gf_integrations.llamaindex import GreenflashInstrumentor

    old = Settings._llm, Settings._embed_model
    Settings.llm, Settings.embed_model = MockLLM(max_tokens=4), MockEmbedding(embed_dim=8)
    inst = GreenflashInstrumentor().instrument()
    try:
        index = VectorStoreIndex.from_documents([Document(text="Paris is in France.")])
        with gf.conversation("li-query"):
            response = index.as_query_engine().query("Where is Paris?")
        llm = MockFunctionCallingLLM(response_generator=scripted_tools, is_chat_model=True)
        agent = FunctionAgent(tools=[get_weather, broken], llm=llm)

        async def run() -> Any:
            with gf.conversation("li-agent"):
                return await agent.run("Weather in Paris?")

        output = asyncio.run(run())
        with gf.conversation("li-chat"):
            chat = SimpleChatEngine.from_defaults().chat("hello")
        assert gf.rate(response, 1, rating_min=0, rating_max=1)
        assert gf.rate(output, 0, rating_min=0, rating_max=1, feedback="no table booked")
        assert gf.rate(chat, 3, rating_min=1, rating_max=5)
        assert client.flush(10)
    finally:
        inst.uninstrument()
        Settings._llm, Settings._embed_model = old
    ((content, score, _),) = rated(collector, "li-query")
    assert (content, score) == (response.response, 1.0)
    assert rated(collector, "li-agent") == [
        ("It is sunny in Paris (turn 1).", 0.0, "no table booked")
    ]
    ((content, score, _),) = rated(collector, "li-chat")
    assert (content, score) == (str(chat), 3.0)

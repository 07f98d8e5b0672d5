"""Pydantic AI's own spans (and under them an instrumented OpenAI client) through
``GreenflashSpanProcessor`` to the loopback capture server. Its own matrix cell runs the
newest Pydantic AI, whose openai floor the lock cannot hold (see noxfile.py).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider

import gf_integrations as gf
import openai
from helpers.otel_spans import chat_api, messages_of, requests_of, summary

pytest.importorskip("pydantic_ai")


# -- Pydantic AI ----------------------------------------------------------------------------


def _weather_agent(tp: TracerProvider) -> Any:
    from pydantic_ai import Agent
    from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel
    from pydantic_ai.models.instrumented import InstrumentationSettings

    def model(messages: list[Any], info: AgentInfo) -> ModelResponse:
        last = messages[-1].parts[-1]
        if getattr(last, "part_kind", None) != "user-prompt":
            return ModelResponse(parts=[TextPart("It is sunny in Paris.")])
        if "tomorrow" in str(last.content):
            return ModelResponse(parts=[TextPart("Rain tomorrow.")])
        return ModelResponse(
            parts=[
                TextPart("let me check"),
                ToolCallPart("get_weather", {"city": "Paris"}, tool_call_id="call_1"),
            ]
        )

    agent = Agent(
        FunctionModel(model, model_name="fn-model"), instructions="You are a weather bot."
    )
    agent.instrument = InstrumentationSettings(tracer_provider=tp)

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """Weather for a city."""
        return f"sunny in {city}"

    return agent


def test_pydantic_ai_agent_with_tool_then_resent_history(provider, gf_client, capture_server):
    agent = _weather_agent(provider)
    first = agent.run_sync("What's the weather in Paris?")
    assert first.output == "It is sunny in Paris."
    second = agent.run_sync("And tomorrow?", message_history=first.all_messages())
    assert second.output == "Rain tomorrow."
    assert gf_client.flush(5)

    reqs = requests_of(capture_server)
    # Pydantic AI keeps one gen_ai.conversation.id across runs that share a history
    assert {r["externalConversationId"] for r in reqs} == {
        provider.exporter.get_finished_spans()[0].attributes["gen_ai.conversation.id"]
    }
    msgs = messages_of(capture_server)
    assert summary(msgs) == [
        ("user", "What's the weather in Paris?", None),
        ("thought", "let me check", 0),
        ("tool_call", "get_weather", 1, {"city": "Paris"}),
        ("observation", "sunny in Paris", 2),
        ("final_response", "It is sunny in Paris.", 0),
        # the second run resends all of the above: only the new turn is stored
        ("user", "And tomorrow?", None),
        ("assistant", "Rain tomorrow.", 5),
    ]
    assert [r.get("systemPrompt") for r in reqs if "systemPrompt" in r] == [
        "You are a weather bot."
    ]
    assert msgs[1]["model"] == msgs[4]["model"] == "fn-model"
    assert msgs[4]["properties"]["usage"] == {
        "inputTokens": 58,
        "outputTokens": 14,
        "totalTokens": 72,
    }
    # one usage per model call (chat spans): the agent run spans, which carry their calls'
    # sum (gen_ai.aggregated_usage.* / gen_ai.usage.*), add none
    spans = provider.exporter.get_finished_spans()
    per_call = [
        s.attributes["gen_ai.usage.input_tokens"] for s in spans if s.name.startswith("chat")
    ]
    recorded = [
        m["properties"]["usage"]["inputTokens"]
        for m in msgs
        if "usage" in (m.get("properties") or {})
    ]
    assert recorded == per_call
    assert msgs[4]["properties"]["provider"] == "function"
    assert msgs[3]["toolName"] == "get_weather"
    assert msgs[3]["output"] == {"result": "sunny in Paris"}


def test_pydantic_ai_structured_output_answer_from_the_agent_run(
    provider, gf_client, capture_server
):
    """With an ``output_type`` the model answers through an output tool; the answer
    itself is only on the agent run span (``final_result``)."""
    from pydantic import BaseModel
    from pydantic_ai import Agent
    from pydantic_ai.models.instrumented import InstrumentationSettings
    from pydantic_ai.models.test import TestModel

    class City(BaseModel):
        name: str
        country: str

    agent = Agent(TestModel(), output_type=City)
    agent.instrument = InstrumentationSettings(tracer_provider=provider)
    with gf.conversation("city-1"):
        assert agent.run_sync("Capital of France?").output == City(name="a", country="a")
    assert gf_client.flush(5)
    msgs = messages_of(capture_server, "city-1")
    assert summary(msgs) == [
        ("user", "Capital of France?", None),
        ("tool_call", "final_result", 0, {"name": "a", "country": "a"}),
        ("final_response", '{"name":"a","country":"a"}', 0),
    ]
    assert msgs[2]["model"] == "test"


def test_pydantic_ai_over_an_instrumented_openai_client_stores_each_message_once(
    openai_v2, gf_client, capture_server
):
    """Two instrumentations describe each model call (Pydantic AI's span and the contrib
    client span nested in it, which ends first and carries no conversation id)."""
    from pydantic_ai import Agent
    from pydantic_ai.models.instrumented import InstrumentationSettings
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    client = openai.AsyncOpenAI(
        api_key="sk-test",
        base_url="http://mock.invalid/v1",
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(chat_api)),
    )
    model = OpenAIChatModel("gpt-4o-mini", provider=OpenAIProvider(openai_client=client))
    agent = Agent(model, instructions="You are a weather bot.")
    agent.instrument = InstrumentationSettings(tracer_provider=openai_v2)

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """Weather for a city."""
        return "sunny"

    assert agent.run_sync("Weather in Paris?").output == "It is sunny in Paris."
    assert gf_client.flush(5)
    spans = openai_v2.exporter.get_finished_spans()
    assert [s.name for s in spans].count("chat gpt-4o-mini") == 4  # 2 calls x 2 layers
    reqs = requests_of(capture_server)
    assert len({r["externalConversationId"] for r in reqs}) == 1
    assert summary(messages_of(capture_server)) == [
        ("user", "Weather in Paris?", None),
        ("tool_call", "get_weather", 0, {"city": "Paris"}),
        ("observation", "sunny", 1),
        ("final_response", "It is sunny in Paris.", 0),
    ]

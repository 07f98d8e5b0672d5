"""The OpenTelemetry bridge end to end: real instrumented frameworks emit real spans on an
SDK ``TracerProvider``; ``GreenflashSpanProcessor`` records them through the real uploader
to the loopback capture server. Model providers are offline (Pydantic AI's
``FunctionModel``, the OpenAI client on an ``httpx.MockTransport``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

import gf_integrations as gf
from gf_integrations.core.kit import forget_logged
from gf_integrations.otel import GreenflashSpanProcessor, instrument_otel
from gf_integrations.schema import MessageCreateRequest

# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def provider(gf_client: gf.GreenflashClient) -> Iterator[TracerProvider]:
    """A fresh SDK provider with our processor and an in-memory exporter next to it."""
    tp = TracerProvider()
    tp.add_span_processor(GreenflashSpanProcessor(client=gf_client))
    exporter = InMemorySpanExporter()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    tp.exporter = exporter  # type: ignore[attr-defined]
    yield tp
    tp.shutdown()


def requests_of(server: Any, conv_id: str | None = None) -> list[dict[str, Any]]:
    reqs = [r for r in server.requests if conv_id is None or r["externalConversationId"] == conv_id]
    for r in reqs:
        MessageCreateRequest.model_validate(r)
    return reqs


def messages_of(server: Any, conv_id: str | None = None) -> list[dict[str, Any]]:
    return [m for r in requests_of(server, conv_id) for m in r["messages"]]


def summary(msgs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """(kind, content or tool name, input) per message, parents as indexes."""
    index = {m["externalMessageId"]: i for i, m in enumerate(msgs)}
    out = []
    for m in msgs:
        kind = m.get("role") or m["messageType"]
        what = m.get("toolName") if kind == "tool_call" else m.get("content")
        parent = index.get(m.get("parentExternalMessageId"))
        row: tuple[Any, ...] = (kind, what, parent)
        if kind == "tool_call":
            row += (m.get("input"),)
        out.append(row)
    return out


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
    assert msgs[4]["properties"]["usage"] == {"input_tokens": 58, "output_tokens": 14}
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


# -- OpenAI client: contrib openai-v2 and OpenInference instrumentors -------------------------


def _chat_api(request: httpx.Request) -> httpx.Response:
    """Chat completions the way the API answers: a tool call first, then the answer."""
    body = json.loads(request.content)
    if body["model"] == "error-model":
        return httpx.Response(
            400, json={"error": {"message": "bad temperature", "type": "invalid_request_error"}}
        )
    if body["messages"][-1]["role"] == "tool":
        message: dict[str, Any] = {"role": "assistant", "content": "It is sunny in Paris."}
        finish = "stop"
    else:
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        }
        finish = "tool_calls"
    return httpx.Response(
        200,
        json={
            "id": f"chatcmpl-{len(body['messages'])}",
            "object": "chat.completion",
            "created": 1,
            "model": body["model"] + "-2024-07-18",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
        },
    )


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def _weather_turn(client: openai.OpenAI) -> None:
    """The app's own tool loop: ask, run the tool, send its result back."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    first = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=TOOLS)
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": "call_1", "content": "sunny"})
    second = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=TOOLS)
    assert second.choices[0].message.content == "It is sunny in Paris."


def _mock_openai() -> openai.OpenAI:
    return openai.OpenAI(
        api_key="sk-test",
        base_url="http://mock.invalid/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(_chat_api)),
    )


WEATHER_TURN = [
    ("user", "Weather in Paris?", None),
    ("tool_call", "get_weather", 0, {"city": "Paris"}),
    ("observation", "sunny", 1),
    ("final_response", "It is sunny in Paris.", 0),
]


def _instrumented(instrumentor: Any, provider: TracerProvider) -> Iterator[TracerProvider]:
    """An OpenTelemetry instrumentor (which patches the openai classes) for one test."""
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield provider
    finally:
        instrumentor.uninstrument()


@pytest.fixture
def openai_v2(provider, monkeypatch) -> Iterator[TracerProvider]:
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "span_only")
    yield from _instrumented(OpenAIInstrumentor(), provider)


def test_contrib_openai_v2_instrumentation(openai_v2, gf_client, capture_server):
    with gf.conversation("weather-1", external_user_id="alice"):
        _weather_turn(_mock_openai())
    assert gf_client.flush(5)
    reqs = requests_of(capture_server)
    assert {(r["externalConversationId"], r["externalUserId"]) for r in reqs} == {
        ("weather-1", "alice")
    }
    msgs = messages_of(capture_server)
    assert summary(msgs) == WEATHER_TURN
    assert reqs[0]["systemPrompt"] == "You are a weather bot."
    assert msgs[1]["model"] == msgs[3]["model"] == "gpt-4o-mini-2024-07-18"
    assert msgs[3]["properties"]["usage"] == {"input_tokens": 12, "output_tokens": 5}
    assert msgs[3]["properties"]["finishReason"] == "stop"


def test_contrib_openai_v2_error_span(openai_v2, gf_client, capture_server):
    with pytest.raises(openai.BadRequestError), gf.conversation("err-1"):
        _mock_openai().chat.completions.create(
            model="error-model", messages=[{"role": "user", "content": "hi"}]
        )
    assert gf_client.flush(5)
    msgs = messages_of(capture_server, "err-1")
    assert [m.get("role") or m["messageType"] for m in msgs] == ["user", "llm"]
    assert msgs[1]["parentExternalMessageId"] == msgs[0]["externalMessageId"]
    assert "BadRequestError" in msgs[1]["content"] or "bad temperature" in msgs[1]["content"]


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
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(_chat_api)),
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


@pytest.fixture
def openinference(provider) -> Iterator[TracerProvider]:
    from openinference.instrumentation.openai import OpenAIInstrumentor

    yield from _instrumented(OpenAIInstrumentor(), provider)


def test_openinference_openai_instrumentation(openinference, gf_client, capture_server):
    from openinference.instrumentation import using_attributes

    # OpenInference's own session/user context names the conversation and the user
    with using_attributes(session_id="session-7", user_id="bob"):
        _weather_turn(_mock_openai())
    assert gf_client.flush(5)
    reqs = requests_of(capture_server)
    assert {(r["externalConversationId"], r["externalUserId"]) for r in reqs} == {
        ("session-7", "bob")
    }
    msgs = messages_of(capture_server)
    assert summary(msgs) == WEATHER_TURN
    assert reqs[0]["systemPrompt"] == "You are a weather bot."
    assert msgs[3]["model"] == "gpt-4o-mini-2024-07-18"
    assert msgs[3]["properties"]["usage"] == {
        "input_tokens": 12,
        "output_tokens": 5,
        "total_tokens": 17,
    }


# -- conventions and identity on hand-made spans (the real SDK, no framework) ----------------


def test_older_per_message_span_events(provider, gf_client, capture_server):
    tracer = provider.get_tracer("legacy-sdk")
    with gf.conversation("legacy-1"), tracer.start_as_current_span("chat gpt-4o") as span:
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.request.model", "gpt-4o")
        span.add_event("gen_ai.system.message", {"content": "Be brief."})
        span.add_event("gen_ai.user.message", {"content": "Weather in Rome?"})
        span.add_event(
            "gen_ai.assistant.message",
            {
                "tool_calls": json.dumps(
                    [
                        {
                            "id": "c9",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                        }
                    ]
                )
            },
        )
        span.add_event("gen_ai.tool.message", {"content": "rainy", "id": "c9"})
        span.add_event(
            "gen_ai.choice",
            {"index": 0, "finish_reason": "stop", "message": json.dumps({"content": "Rainy."})},
        )
    assert gf_client.flush(5)
    assert summary(messages_of(capture_server)) == [
        ("user", "Weather in Rome?", None),
        ("tool_call", "get_weather", 0, {"city": "Rome"}),
        ("observation", "rainy", 1),
        ("final_response", "Rainy.", 0),
    ]
    assert requests_of(capture_server)[0]["systemPrompt"] == "Be brief."


def test_openinference_agent_spans_llm_then_tool(provider, gf_client, capture_server):
    """An OpenInference agent framework's spans: the LLM asks for a tool, the TOOL span
    runs it (its observation is parented to the model's tool call)."""
    tracer = provider.get_tracer("oi-agent")
    with tracer.start_as_current_span("agent", attributes={"openinference.span.kind": "AGENT"}):
        with tracer.start_as_current_span("llm") as llm:
            llm.set_attributes(
                {
                    "openinference.span.kind": "LLM",
                    "session.id": "oi-1",
                    "llm.model_name": "claude-x",
                    "llm.input_messages.0.message.role": "system",
                    "llm.input_messages.0.message.content": "Use tools.",
                    "llm.input_messages.1.message.role": "user",
                    "llm.input_messages.1.message.contents.0.message_content.type": "text",
                    "llm.input_messages.1.message.contents.0.message_content.text": "2+3?",
                    "llm.output_messages.0.message.role": "assistant",
                    "llm.output_messages.0.message.tool_calls.0.tool_call.id": "t-7",
                    "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "add",
                    "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": (
                        '{"a": 2, "b": 3}'
                    ),
                }
            )
        with tracer.start_as_current_span("add") as tool:
            tool.set_attributes(
                {
                    "openinference.span.kind": "TOOL",
                    "tool.name": "add",
                    "tool_call.id": "t-7",
                    "input.value": '{"a": 2, "b": 3}',
                    "output.value": "5",
                }
            )
    assert gf_client.flush(5)
    assert summary(messages_of(capture_server, "oi-1")) == [
        ("user", "2+3?", None),
        ("tool_call", "add", 0, {"a": 2, "b": 3}),
        ("observation", "5", 1),
    ]
    assert requests_of(capture_server)[0]["systemPrompt"] == "Use tools."


def test_identity_from_another_span_of_the_trace_and_one_conversation_per_trace(
    provider, gf_client, capture_server
):
    tracer = provider.get_tracer("app")

    def chat(text: str) -> None:
        with tracer.start_as_current_span("chat m") as span:
            span.set_attribute("gen_ai.operation.name", "chat")
            span.set_attribute(
                "gen_ai.input.messages",
                json.dumps([{"role": "user", "parts": [{"type": "text", "content": text}]}]),
            )
            span.set_attribute(
                "gen_ai.output.messages",
                json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "ok"}]}]),
            )

    # an outer span of the app names session and user when it starts; the chat span
    # inside it carries neither, and ends first
    with tracer.start_as_current_span("request", attributes={"session.id": "s1", "user.id": "u1"}):
        chat("inside the session")
    with tracer.start_as_current_span("request") as root:
        chat("no ids at all")
        trace_id = root.get_span_context().trace_id
    assert gf_client.flush(5)
    convs = {
        r["externalConversationId"]: (r["externalUserId"], r["messages"][0]["content"])
        for r in requests_of(capture_server)
    }
    assert convs == {
        "s1": ("u1", "inside the session"),
        f"otel-{trace_id:032x}": ("anonymous", "no ids at all"),
    }


def test_tool_span_error_and_malformed_attributes_never_reach_the_host(
    provider, gf_client, capture_server, caplog
):
    forget_logged(("otel", "reading gen_ai messages"))  # logged once per process
    tracer = provider.get_tracer("app")
    with gf.conversation("bad-1"):
        with tracer.start_as_current_span("execute_tool book") as span:
            span.set_attribute("gen_ai.operation.name", "execute_tool")
            span.set_attribute("gen_ai.tool.name", "book")
            span.set_attribute("gen_ai.tool.call.id", "t1")
            span.set_attribute("gen_ai.tool.call.arguments", '{"seats": 2}')
            span.set_status(Status(StatusCode.ERROR, "RuntimeError: no tables left"))
        with tracer.start_as_current_span("chat m") as span:
            span.set_attribute("gen_ai.operation.name", "chat")
            span.set_attribute("gen_ai.input.messages", '[{"role": 5, "parts": 7}, "x", 3]')
            span.set_attribute("gen_ai.output.messages", "{not json")
            span.set_attribute("gen_ai.response.finish_reasons", ["stop"])
    assert gf_client.flush(5)
    msgs = messages_of(capture_server, "bad-1")
    assert summary(msgs) == [
        ("tool_call", "book", None, {"seats": 2}),
        ("tool_error", "Error: RuntimeError: no tables left", 0),
    ]
    # the unreadable message list is not silently dropped: it is logged (once)
    assert any("is not valid JSON" in r.getMessage() for r in caplog.records)


def test_other_spans_are_ignored_and_on_end_never_raises(gf_client, capture_server, caplog):
    forget_logged(("otel", "on_end"))  # logged once per process
    tp = TracerProvider()
    processor = GreenflashSpanProcessor(client=gf_client)
    tp.add_span_processor(processor)
    tracer = tp.get_tracer("app")
    with tracer.start_as_current_span("GET /health", attributes={"http.method": "GET"}):
        pass
    processor.on_end(object())  # type: ignore[arg-type]  # not a span at all
    assert gf_client.flush(5)
    assert capture_server.requests == []
    assert any("OpenTelemetry bridge failed in on_end" in r.message for r in caplog.records)
    assert processor.force_flush() is True  # nothing recorded through it yet
    tp.shutdown()
    # after the provider's shutdown, GenAI spans are no longer recorded
    processor.on_end(provider_span(tracer))
    assert gf_client.flush(5)
    assert capture_server.requests == []


def provider_span(tracer: Any) -> Any:
    """A finished chat span."""
    with tracer.start_as_current_span("chat m", attributes={"gen_ai.operation.name": "chat"}) as s:
        s.set_attribute("gen_ai.output.messages", '[{"role": "assistant", "parts": "hi"}]')
    return s


# -- instrument_otel ---------------------------------------------------------------------------


def test_instrument_otel_on_a_provider_is_idempotent(gf_client, capture_server, make_client):
    tp = TracerProvider()
    first = instrument_otel(tp, client=gf_client, external_user_id="carol")
    other = make_client()
    again = instrument_otel(tp, client=other, external_user_id="dave")
    assert again is first
    assert first.defaults.external_user_id == "dave"
    with pytest.raises(TypeError):
        instrument_otel(trace.NoOpTracerProvider())
    with pytest.raises(TypeError):
        GreenflashSpanProcessor(client="not a client")  # type: ignore[arg-type]
    tp.shutdown()


def test_instrument_otel_sets_a_global_provider_when_none_is_set(tmp_path, capture_server):
    script = f"""
import logging, sys
import gf_integrations as gf
from gf_integrations.otel import instrument_otel
from opentelemetry import trace

client = gf.configure(base_url="{capture_server.base_url}", flush_interval=0.05)
processor = instrument_otel(external_user_id="erin")
tracer = trace.get_tracer("app")
with tracer.start_as_current_span("chat m", attributes={{
    "gen_ai.operation.name": "chat",
    "gen_ai.input.messages": '[{{"role": "user", "parts": [{{"type": "text", "content": "hi"}}]}}]',
}}):
    pass
assert instrument_otel() is processor
assert processor.force_flush(5000)
"""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    msgs = messages_of(capture_server)
    assert [(m["role"], m["content"]) for m in msgs] == [("user", "hi")]
    assert capture_server.requests[0]["externalUserId"] == "erin"

"""The OpenTelemetry bridge end to end: real instrumented frameworks emit real spans on an
SDK ``TracerProvider``; ``GreenflashSpanProcessor`` records them through the real uploader
to the loopback capture server. Model providers are offline (Pydantic AI's
``FunctionModel``, the OpenAI client on an ``httpx.MockTransport``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

import gf_integrations as gf
import openai
from gf_integrations.kit import forget_logged
from gf_integrations.otel import GreenflashSpanProcessor, instrument_otel
from helpers.otel_spans import (
    WEATHER_TURN,
    messages_of,
    mock_openai,
    requests_of,
    summary,
    weather_turn,
)
from helpers.usage import SAME_CALL

# -- OpenAI client: contrib openai-v2 and OpenInference instrumentors -------------------------


def test_contrib_openai_v2_instrumentation(openai_v2, gf_client, capture_server):
    with gf.conversation("weather-1", external_user_id="alice"):
        weather_turn(mock_openai())
    assert gf_client.flush(5)
    reqs = requests_of(capture_server)
    assert {(r["externalConversationId"], r["externalUserId"]) for r in reqs} == {
        ("weather-1", "alice")
    }
    msgs = messages_of(capture_server)
    assert summary(msgs) == WEATHER_TURN
    assert reqs[0]["systemPrompt"] == "You are a weather bot."
    assert msgs[1]["model"] == msgs[3]["model"] == "gpt-4o-mini-2024-07-18"
    # the instrumentation records input and output counts only (gen_ai.usage.*)
    assert msgs[3]["properties"]["usage"] == {
        "inputTokens": 11,
        "outputTokens": 7,
        "totalTokens": 18,
    }
    assert msgs[3]["properties"]["finishReason"] == "stop"


def test_contrib_openai_v2_error_span(openai_v2, gf_client, capture_server):
    with pytest.raises(openai.BadRequestError), gf.conversation("err-1"):
        mock_openai().chat.completions.create(
            model="error-model", messages=[{"role": "user", "content": "hi"}]
        )
    assert gf_client.flush(5)
    msgs = messages_of(capture_server, "err-1")
    assert [m.get("role") or m["messageType"] for m in msgs] == ["user", "llm"]
    assert msgs[1]["parentExternalMessageId"] == msgs[0]["externalMessageId"]
    assert "BadRequestError" in msgs[1]["content"] or "bad temperature" in msgs[1]["content"]


def test_openinference_openai_instrumentation(openinference, gf_client, capture_server):
    from openinference.instrumentation import using_attributes

    # OpenInference's own session/user context names the conversation and the user
    with using_attributes(session_id="session-7", user_id="bob"):
        weather_turn(mock_openai())
    assert gf_client.flush(5)
    reqs = requests_of(capture_server)
    assert {(r["externalConversationId"], r["externalUserId"]) for r in reqs} == {
        ("session-7", "bob")
    }
    msgs = messages_of(capture_server)
    assert summary(msgs) == WEATHER_TURN
    assert reqs[0]["systemPrompt"] == "You are a weather bot."
    assert msgs[3]["model"] == "gpt-4o-mini-2024-07-18"
    # OpenInference records the cache and reasoning details: the same usage as wrap_openai's,
    # less the cache writes its older releases (0.1.40) leave out
    expected = dict(SAME_CALL)
    if not _openinference_reports_cache_writes():
        expected.pop("cacheWriteTokens")
    assert msgs[3]["properties"]["usage"] == expected


def _openinference_reports_cache_writes() -> bool:
    """A feature probe on the installed instrumentor's source."""
    import inspect

    from openinference.instrumentation.openai import _response_attributes_extractor as ex

    return "cache_write_tokens" in inspect.getsource(ex)


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
    # the agent span sums its calls' tokens: recorded once, from the LLM span
    agent_attrs = {
        "openinference.span.kind": "AGENT",
        "llm.token_count.prompt": 110,
        "llm.token_count.completion": 70,
    }
    with tracer.start_as_current_span("agent", attributes=agent_attrs):
        with tracer.start_as_current_span("llm") as llm:
            llm.set_attributes(
                {
                    "openinference.span.kind": "LLM",
                    "session.id": "oi-1",
                    "llm.model_name": "claude-x",
                    "llm.token_count.prompt": 11,
                    "llm.token_count.completion": 7,
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
    msgs = messages_of(capture_server, "oi-1")
    assert summary(msgs) == [
        ("user", "2+3?", None),
        ("tool_call", "add", 0, {"a": 2, "b": 3}),
        ("observation", "5", 1),
    ]
    usages = [m["properties"]["usage"] for m in msgs if "usage" in m.get("properties", {})]
    assert usages == [{"inputTokens": 11, "outputTokens": 7, "totalTokens": 18}]
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

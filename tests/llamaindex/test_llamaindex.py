"""GreenflashInstrumentor with LlamaIndex's own fakes, against the loopback capture server.

Everything is offline: ``Settings.llm`` / ``Settings.embed_model`` are set to MockLLM /
MockEmbedding for every test, agents use MockFunctionCallingLLM with scripted replies.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.metadata
import logging
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

import llama_index.core.base.llms.types as li_types
import llama_index.core.llms.mock as li_mock
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.base.llms.types import (
    ChatMessage,
    CompletionResponse,
    MessageRole,
    TextBlock,
)
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.dispatcher import instrument_tags
from llama_index.core.llms import MockLLM
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.prompts import PromptTemplate
from llama_index.core.workflow import Workflow

import gf_integrations as gf
from gf_integrations.core.context import outer_llm_capture_active
from gf_integrations.llamaindex import GreenflashInstrumentor
from gf_integrations.schema import MessageCreateRequest

# -- what the installed llama-index-core has (feature probes: later tests skip without them) --

try:
    from llama_index.core.agent.workflow import FunctionAgent
except ImportError:  # llama-index-core < 0.12.12: no agent workflows
    FunctionAgent = None
# an agent that is a workflow itself (0.12.43): before, ``agent.run`` wrapped the agent in
# an AgentWorkflow (0.12.23) or an agent ran only inside one, and the run's root span is
# the wrapper's, not the agent's
HAS_AGENT_WORKFLOW = FunctionAgent is not None and issubclass(FunctionAgent, Workflow)
# the scripted agent tests drive LlamaIndex's own fake function-calling model (its replies
# carry ToolCallBlock, which came earlier, in 0.14.5)
HAS_MOCK_FC_LLM = hasattr(li_mock, "MockFunctionCallingLLM")
# an agent's ``streaming`` option (0.13.2): the provider tests drive both ways
HAS_AGENT_STREAMING = HAS_AGENT_WORKFLOW and "streaming" in FunctionAgent.model_fields
needs_agent_workflow = pytest.mark.skipif(
    not HAS_AGENT_WORKFLOW,
    reason="llama-index-core < 0.12.43 has no agents that are workflows themselves",
)
needs_agent_streaming = pytest.mark.skipif(
    not HAS_AGENT_STREAMING,
    reason="llama-index-core < 0.13.2 has no streaming option on workflow agents",
)
needs_scripted_agents = pytest.mark.skipif(
    not (HAS_AGENT_WORKFLOW and HAS_MOCK_FC_LLM),
    reason="llama-index-core < 0.14.10 has no MockFunctionCallingLLM to script an agent with",
)

# -- fixtures and helpers --------------------------------------------------------------------


@pytest.fixture(autouse=True)
def offline_settings() -> Iterator[None]:
    """Never let LlamaIndex fall back to OpenAI."""
    old_llm, old_embed = Settings._llm, Settings._embed_model
    Settings.llm = MockLLM(max_tokens=4)
    Settings.embed_model = MockEmbedding(embed_dim=8)
    yield
    Settings._llm, Settings._embed_model = old_llm, old_embed


@pytest.fixture
def inst(gf_client: gf.GreenflashClient) -> Iterator[GreenflashInstrumentor]:
    instrumentor = GreenflashInstrumentor(external_user_id="u-default").instrument()
    try:
        yield instrumentor
    finally:
        instrumentor.uninstrument()


def settle(client: gf.GreenflashClient, server: Any) -> None:
    """Flush, then wait until the server has stored every delivered message.

    (The capture server appends a body after answering it, so a returned flush can be a
    moment ahead of ``server.requests``.)
    """
    assert client.flush(5)
    sent = client.stats()["sent"]
    assert server.wait_for(lambda s: sum(len(r["messages"]) for r in s.requests) >= sent)


def conv_requests(server: Any, conv_id: str) -> list[dict[str, Any]]:
    reqs = [r for r in server.requests if r["externalConversationId"] == conv_id]
    for r in reqs:
        MessageCreateRequest.model_validate(r)
    return reqs


def conv_messages(server: Any, conv_id: str) -> list[dict[str, Any]]:
    return [m for r in conv_requests(server, conv_id) for m in r["messages"]]


def created_at(msg: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(msg["createdAt"].replace("Z", "+00:00"))


def kinds(msgs: list[dict[str, Any]]) -> list[str]:
    return [m.get("role") or m["messageType"] for m in msgs]


def system_prompts(server: Any, conv_id: str) -> list[Any]:
    return [r["systemPrompt"] for r in conv_requests(server, conv_id) if "systemPrompt" in r]


def assert_state_empty(inst: GreenflashInstrumentor) -> None:
    sizes = inst._state_sizes()
    assert {k: v for k, v in sizes.items() if k != "recent"} == {
        "spans": 0,
        "roots": 0,
        "pending": 0,
        "awaiting": 0,
        "builds": 0,
    }


def sys_user(user: str, system: str = "be terse") -> list[ChatMessage]:
    return [ChatMessage(role="system", content=system), ChatMessage(role="user", content=user)]


@pytest.fixture
def index() -> VectorStoreIndex:
    docs = [Document(text="Paris is the capital of France.", metadata={"src": "wiki"})]
    return VectorStoreIndex.from_documents(docs)


def get_weather(city: str) -> str:
    """Weather for a city."""
    return f"Sunny in {city}"


def broken(x: int) -> str:
    """Always fails."""
    raise ValueError("boom")


def scripted_tools(messages: Any, **kwargs: Any) -> ChatMessage:
    """After the latest user message: first ask for both tools, then answer."""
    turn = sum(1 for m in messages if m.role == MessageRole.USER)
    last_user = max(i for i, m in enumerate(messages) if m.role == MessageRole.USER)
    if any(m.role == MessageRole.TOOL for m in messages[last_user:]):
        return ChatMessage(role="assistant", content=f"It is sunny in Paris (turn {turn}).")
    return ChatMessage(
        role="assistant",
        blocks=[
            TextBlock(text="Let me check."),
            li_types.ToolCallBlock(
                tool_call_id=f"call_{turn}_1",
                tool_name="get_weather",
                tool_kwargs={"city": "Paris"},
            ),
            li_types.ToolCallBlock(
                tool_call_id=f"call_{turn}_2", tool_name="broken", tool_kwargs={"x": 1}
            ),
        ],
    )


# -- LLM calls ---------------------------------------------------------------------------------


def test_chat_then_history_is_stored_once(inst, gf_client, capture_server):
    llm = Settings.llm
    with gf.conversation("chat-1", external_user_id="u1"):
        first = llm.chat(sys_user("hi"))
        history = [*sys_user("hi"), first.message, ChatMessage(role="user", content="more")]
        llm.chat(history)
    settle(gf_client, capture_server)
    msgs = conv_messages(capture_server, "chat-1")
    assert kinds(msgs) == ["user", "assistant", "user", "assistant"]
    assert [m["content"] for m in msgs] == ["hi", first.message.content, "more", msgs[3]["content"]]
    assert msgs[1]["parentExternalMessageId"] == msgs[0]["externalMessageId"]
    assert msgs[3]["parentExternalMessageId"] == msgs[2]["externalMessageId"]
    assert msgs[1]["model"] == "MockLLM"  # model_name is "unknown": class name instead
    assert msgs[1]["properties"]["latencyMs"] >= 0
    assert system_prompts(capture_server, "chat-1") == ["be terse"]  # once per conversation
    assert {r["externalUserId"] for r in conv_requests(capture_server, "chat-1")} == {"u1"}
    assert_state_empty(inst)


def test_completion_call_and_usage_from_raw(inst, gf_client, capture_server):
    class UsageLLM(MockLLM):
        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kw: Any) -> CompletionResponse:
            raw = {"model": "gpt-test-1", "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
            return CompletionResponse(text="pong", raw=raw)

    with gf.conversation("completion-1"):
        UsageLLM().complete("ping")
    settle(gf_client, capture_server)
    msgs = conv_messages(capture_server, "completion-1")
    assert kinds(msgs) == ["user", "assistant"]
    assert [m["content"] for m in msgs] == ["ping", "pong"]
    assert msgs[1]["model"] == "gpt-test-1"
    # the provider's shape recognised by its keys (an LLM class may return any provider's)
    assert msgs[1]["properties"]["usage"] == {"inputTokens": 3, "outputTokens": 2, "totalTokens": 5}
    assert msgs[1]["properties"]["providerUsage"] == {"prompt_tokens": 3, "completion_tokens": 2}


def test_streaming_chat_is_recorded_at_its_end_and_abandoned_stream_is_closed(
    inst, gf_client, capture_server
):
    llm = Settings.llm
    with gf.conversation("stream-1"):
        chunks = list(llm.stream_chat(sys_user("stream please")))
    with gf.conversation("stream-2"):
        gen = llm.stream_chat(sys_user("abandon me"))
        next(gen)
        gen.close()
    settle(gf_client, capture_server)
    full = conv_messages(capture_server, "stream-1")
    assert kinds(full) == ["user", "assistant"]
    assert full[1]["content"] == chunks[-1].message.content
    cut = conv_messages(capture_server, "stream-2")
    assert kinds(cut) == ["user", "assistant"]
    assert cut[1]["properties"]["partial"] is True
    assert cut[1]["properties"]["error"]["type"] == "GeneratorExit"
    assert_state_empty(inst)


def test_never_closed_stream_is_swept_after_ttl(inst, gf_client, capture_server):
    with gf.conversation("stream-lost"):
        gen = Settings.llm.stream_chat(sys_user("lost"))
        next(gen)
    assert inst._state_sizes()["pending"] == 1
    engine = inst._engine
    with engine.rec.lock:
        engine._sweep(time.monotonic() + 10_000)
    settle(gf_client, capture_server)
    msgs = conv_messages(capture_server, "stream-lost")
    assert kinds(msgs) == ["user", "assistant"]
    assert msgs[1]["properties"]["partial"] is True
    assert_state_empty(inst)
    del gen


def test_llm_error_is_recorded_and_still_raised(inst, gf_client, capture_server):
    class Failing(MockLLM):
        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kw: Any) -> CompletionResponse:
            raise RuntimeError("provider down")

    with gf.conversation("llm-error"), pytest.raises(RuntimeError, match="provider down"):
        Failing().chat(sys_user("hello?"))
    settle(gf_client, capture_server)
    msgs = conv_messages(capture_server, "llm-error")
    assert kinds(msgs) == ["user", "llm"]
    assert msgs[1]["content"] == "RuntimeError: provider down"
    assert msgs[1]["properties"]["error"]["type"] == "RuntimeError"
    assert_state_empty(inst)


def test_prompt_template_becomes_components_and_variables(inst, gf_client, capture_server):
    with gf.conversation("template-1"):
        out = Settings.llm.predict(
            PromptTemplate("Tell me about {topic} in {style}."), topic="cats", style="haiku"
        )
    settle(gf_client, capture_server)
    msgs = conv_messages(capture_server, "template-1")
    assert kinds(msgs) == ["assistant"]
    assert msgs[0]["content"] == out
    (prompt,) = system_prompts(capture_server, "template-1")
    assert prompt["components"][0]["content"] == "Tell me about {{topic}} in {{style}}."
    assert prompt["variables"] == {"topic": "cats", "style": "haiku"}


# -- query engines -----------------------------------------------------------------------------


def test_query_engine_turn(inst, gf_client, capture_server, index):
    with gf.conversation("rag-1", external_user_id="u-rag"):
        response = index.as_query_engine(similarity_top_k=1).query("What is the capital of France?")
    settle(gf_client, capture_server)
    msgs = conv_messages(capture_server, "rag-1")
    # the query's own embedding is part of the retrieval: no embedding message
    assert kinds(msgs) == ["user", "retrieval", "final_response"]
    user, retrieval, final = msgs
    assert user["content"] == "What is the capital of France?"
    (doc,) = retrieval["output"]["documents"]
    node = response.source_nodes[0]
    assert doc["id"] == node.node.node_id
    assert doc["text"] == "Paris is the capital of France."
    assert doc["metadata"] == {"src": "wiki"}
    assert doc["score"] == pytest.approx(node.score)
    assert final["content"] == response.response
    assert final["context"] == "Paris is the capital of France."
    assert final["model"] == "MockLLM"
    for m in (retrieval, final):
        assert m["parentExternalMessageId"] == user["externalMessageId"]
    (prompt,) = system_prompts(capture_server, "rag-1")
    text = "\n".join(c["content"] for c in prompt["components"])
    assert "{{context_str}}" in text
    assert "{{query_str}}" in text
    assert prompt["variables"]["query_str"] == "What is the capital of France?"
    assert_state_empty(inst)


class StreamingLLM(MockLLM):
    """MockLLM whose streamed ``text`` is cumulative (MockLLM's lags one token behind)."""

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kw: Any) -> Any:
        def gen() -> Iterator[CompletionResponse]:
            text = ""
            for word in ("Paris ", "it ", "is."):
                text += word
                yield CompletionResponse(text=text, delta=word)

        return gen()


def test_streaming_query_answer_is_recorded_when_consumed(inst, gf_client, capture_server, index):
    Settings.llm = StreamingLLM()
    with gf.conversation("rag-stream"):
        response = index.as_query_engine(streaming=True).query("Capital of France?")
        text = "".join(response.response_gen)
    settle(gf_client, capture_server)
    msgs = conv_messages(capture_server, "rag-stream")
    assert kinds(msgs) == ["user", "retrieval", "final_response"]
    assert msgs[-1]["content"] == text == "Paris it is."
    assert msgs[-1]["context"] == "Paris is the capital of France."
    assert_state_empty(inst)


def test_async_query_engine(inst, gf_client, capture_server, index):
    async def main() -> Any:
        with gf.conversation("rag-async"):
            return await index.as_query_engine().aquery("Capital of France?")

    response = asyncio.run(main())
    settle(gf_client, capture_server)
    msgs = conv_messages(capture_server, "rag-async")
    assert kinds(msgs) == ["user", "retrieval", "final_response"]
    assert msgs[-1]["content"] == response.response


def test_index_build_sends_one_summary_in_a_conversation_and_nothing_outside(
    inst, gf_client, capture_server
):
    docs = [Document(text=f"doc number {i}") for i in range(25)]
    Settings.embed_model = MockEmbedding(embed_dim=8, embed_batch_size=10)
    VectorStoreIndex.from_documents(docs)  # no conversation: nothing
    with gf.conversation("build-1"):
        VectorStoreIndex.from_documents(docs)  # three batches: one summary
    inst.flush_pending()
    settle(gf_client, capture_server)
    assert [m for m in capture_server.messages if m["messageType"] != "embedding"] == []
    msgs = conv_messages(capture_server, "build-1")
    assert kinds(msgs) == ["embedding"]
    assert msgs[0]["output"] == {"count": 25, "dimensions": 8}
    assert len(capture_server.messages) == 1
    assert_state_empty(inst)


# -- agents ------------------------------------------------------------------------------------


@needs_scripted_agents
def test_function_agent_with_working_and_failing_tool(inst, gf_client, capture_server):
    llm = li_mock.MockFunctionCallingLLM(response_generator=scripted_tools, is_chat_model=True)
    agent = FunctionAgent(
        tools=[get_weather, broken], llm=llm, system_prompt="You are a weather bot."
    )

    async def main() -> Any:
        with gf.conversation("agent-1", external_user_id="u-agent"):
            return await agent.run("Weather in Paris?")

    result = asyncio.run(main())
    settle(gf_client, capture_server)
    msgs = conv_messages(capture_server, "agent-1")
    assert kinds(msgs) == [
        "user",
        "thought",
        "tool_call",
        "tool_call",
        "observation",
        "tool_error",
        "final_response",
    ]
    user, thought, call1, call2 = msgs[:4]
    by_kind = {m["messageType"]: m for m in msgs[4:]}
    assert user["content"] == "Weather in Paris?"
    assert thought["content"] == "Let me check."
    assert thought["model"] == "MockFunctionCallingLLM"
    assert (call1["toolName"], call1["input"]) == ("get_weather", {"city": "Paris"})
    assert (call2["toolName"], call2["input"]) == ("broken", {"x": 1})
    assert call1["parentExternalMessageId"] == thought["externalMessageId"]
    obs, err = by_kind["observation"], by_kind["tool_error"]
    assert obs["output"] == {"result": "Sunny in Paris"}
    assert obs["parentExternalMessageId"] == call1["externalMessageId"]
    assert err["toolName"] == "broken"
    assert "boom" in err["content"]
    assert err["parentExternalMessageId"] == call2["externalMessageId"]
    final = by_kind["final_response"]
    assert final["content"] == str(result.response.content) == "It is sunny in Paris (turn 1)."
    assert final["parentExternalMessageId"] == user["externalMessageId"]
    assert system_prompts(capture_server, "agent-1") == ["You are a weather bot."]
    assert {r["externalUserId"] for r in conv_requests(capture_server, "agent-1")} == {"u-agent"}
    assert_state_empty(inst)


@needs_scripted_agents
def test_parallel_tool_results_follow_the_order_of_the_calls(inst, gf_client, capture_server):
    """An agent runs a step's tool calls at once; the first one here ends last (it waits
    until the second's span has ended, ours seen first), yet the results are recorded in
    the calls' order."""
    from llama_index.core.instrumentation.span_handlers import BaseSpanHandler

    second_ended = threading.Event()

    class SignalFailedToolEnd(BaseSpanHandler[Any]):
        """Runs after ours: tells the first tool that the second one's span has ended."""

        def new_span(self, *args: Any, **kwargs: Any) -> None:
            return None

        def prepare_to_exit_span(self, *args: Any, **kwargs: Any) -> None:
            return None

        def prepare_to_drop_span(self, *args: Any, **kwargs: Any) -> None:
            return None

        def span_exit(self, id_: str, *args: Any, result: Any = None, **kwargs: Any) -> None:
            if getattr(result, "tool_name", None) == "broken":
                second_ended.set()

    def get_weather(city: str) -> str:
        """Weather for a city."""
        assert second_ended.wait(30), "the tool calls did not run concurrently"
        return f"Sunny in {city}"

    llm = li_mock.MockFunctionCallingLLM(response_generator=scripted_tools, is_chat_model=True)
    agent = FunctionAgent(tools=[get_weather, broken], llm=llm)

    async def main() -> Any:
        with gf.conversation("agent-order"):
            return await agent.run("Weather in Paris?")

    dispatcher = get_dispatcher()
    signal = SignalFailedToolEnd()
    dispatcher.span_handlers.append(signal)
    try:
        asyncio.run(main())
    finally:
        dispatcher.span_handlers.remove(signal)
    settle(gf_client, capture_server)
    msgs = conv_messages(capture_server, "agent-order")
    assert kinds(msgs) == [
        "user",
        "thought",
        "tool_call",
        "tool_call",
        "observation",
        "tool_error",
        "final_response",
    ]
    _, _, call1, call2, obs, err, _ = msgs
    assert obs["parentExternalMessageId"] == call1["externalMessageId"]
    assert err["parentExternalMessageId"] == call2["externalMessageId"]
    # each keeps the time it really ended
    assert created_at(obs) > created_at(err)
    assert_state_empty(inst)


@needs_scripted_agents
def test_agent_second_turn_does_not_resend_history(inst, gf_client, capture_server):
    from llama_index.core.memory import Memory

    llm = li_mock.MockFunctionCallingLLM(response_generator=scripted_tools, is_chat_model=True)
    agent = FunctionAgent(
        tools=[get_weather, broken], llm=llm, system_prompt="You are a weather bot."
    )
    memory = Memory.from_defaults(session_id="s1")

    async def main() -> None:
        with instrument_tags({"gf.conversation_id": "agent-2", "gf.user_id": "u-tags"}):
            await agent.run("Weather in Paris?", memory=memory)
            await agent.run("And tomorrow?", memory=memory)

    asyncio.run(main())
    settle(gf_client, capture_server)
    msgs = conv_messages(capture_server, "agent-2")
    turn = ["thought", "tool_call", "tool_call", "observation", "tool_error", "final_response"]
    assert sorted(kinds(msgs)) == sorted(["user", *turn, "user", *turn])  # history not resent
    assert [m["content"] for m in msgs if m.get("role") == "user"] == [
        "Weather in Paris?",
        "And tomorrow?",
    ]
    assert kinds(msgs)[-1] == "final_response"
    assert msgs[-1]["content"] == "It is sunny in Paris (turn 2)."
    assert {r["externalUserId"] for r in conv_requests(capture_server, "agent-2")} == {"u-tags"}


# -- chat engines ------------------------------------------------------------------------------


def test_chat_engine_plain_and_streaming(inst, gf_client, capture_server):
    # StreamingLLM: llama-index-core 0.12's MockLLM streams deltas that do not add up to its text
    engine = SimpleChatEngine.from_defaults(system_prompt="You are kind.", llm=StreamingLLM())
    with gf.conversation("ce-1"):
        first = engine.chat("hello")
        streamed = engine.stream_chat("how are you")
        text = "".join(streamed.response_gen)
    settle(gf_client, capture_server)
    msgs = conv_messages(capture_server, "ce-1")
    assert kinds(msgs) == ["user", "assistant", "user", "assistant"]
    assert [m["content"] for m in msgs] == ["hello", first.response, "how are you", text]
    assert msgs[3]["parentExternalMessageId"] == msgs[2]["externalMessageId"]
    assert system_prompts(capture_server, "ce-1") == ["You are kind."]
    assert_state_empty(inst)


def test_chat_engine_async_streaming(inst, gf_client, capture_server):
    engine = SimpleChatEngine.from_defaults(system_prompt="You are kind.", llm=StreamingLLM())

    async def main() -> str:
        with gf.conversation("ce-async"):
            r = await engine.astream_chat("async hi")
            return "".join([t async for t in r.async_response_gen()])

    text = asyncio.run(main())
    settle(gf_client, capture_server)
    msgs = conv_messages(capture_server, "ce-async")
    assert kinds(msgs) == ["user", "assistant"]  # the nested stream_chat is not a second reply
    assert msgs[1]["content"] == text
    assert_state_empty(inst)


# -- identity, threads, install ----------------------------------------------------------------


def test_tags_name_the_conversation_and_scope_wins_over_tags(inst, gf_client, capture_server):
    with instrument_tags({"gf.conversation_id": "tag-conv", "gf.user_id": "tag-user"}):
        Settings.llm.chat(sys_user("from tags"))
        with gf.conversation("scope-conv", external_user_id="scope-user"):
            Settings.llm.chat(sys_user("from scope"))
    Settings.llm.chat(sys_user("from nowhere"))
    settle(gf_client, capture_server)
    (tagged,) = conv_requests(capture_server, "tag-conv")
    assert tagged["externalUserId"] == "tag-user"
    assert tagged["messages"][0]["content"] == "from tags"
    (scoped,) = conv_requests(capture_server, "scope-conv")
    assert scoped["externalUserId"] == "scope-user"
    other = [
        r
        for r in capture_server.requests
        if r["externalConversationId"] not in ("tag-conv", "scope-conv")
    ]
    assert len(other) == 1
    assert other[0]["externalUserId"] == "u-default"


def test_threads_without_copied_context_land_by_tags(inst, gf_client, capture_server):
    errors: list[BaseException] = []

    def worker(conv: str) -> None:
        try:
            with instrument_tags({"gf.conversation_id": conv, "gf.user_id": "u-" + conv}):
                Settings.llm.chat(sys_user("question from " + conv))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"thread-{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    settle(gf_client, capture_server)
    for i in range(4):
        msgs = conv_messages(capture_server, f"thread-{i}")
        assert kinds(msgs) == ["user", "assistant"]
        assert msgs[0]["content"] == f"question from thread-{i}"
    assert_state_empty(inst)


def test_root_identity_reaches_a_thread_with_copied_context(inst, gf_client, capture_server, index):
    from llama_index.core.types import Thread  # runs its target in a copied context

    engine = index.as_query_engine()
    out: list[Any] = []
    with gf.conversation("copied-ctx"):
        t = Thread(target=lambda: out.append(engine.query("Capital?")))
        t.start()
        t.join()
    settle(gf_client, capture_server)
    assert kinds(conv_messages(capture_server, "copied-ctx")) == [
        "user",
        "retrieval",
        "final_response",
    ]


def test_instrument_is_idempotent_and_uninstrument_detaches(gf_client, capture_server):
    dispatcher = get_dispatcher()
    n_events, n_spans = len(dispatcher.event_handlers), len(dispatcher.span_handlers)
    first = GreenflashInstrumentor().instrument()
    try:
        first.instrument()
        second = GreenflashInstrumentor(external_user_id="other").instrument()
        assert len(dispatcher.event_handlers) == n_events + 1
        assert len(dispatcher.span_handlers) == n_spans + 1
        assert not second.is_instrumented
        with gf.conversation("idem-1"):
            Settings.llm.chat(sys_user("once"))
        settle(gf_client, capture_server)
        assert kinds(conv_messages(capture_server, "idem-1")) == ["user", "assistant"]
    finally:
        first.uninstrument()
    assert len(dispatcher.event_handlers) == n_events
    assert len(dispatcher.span_handlers) == n_spans
    with gf.conversation("idem-2"):
        Settings.llm.chat(sys_user("not recorded"))
    settle(gf_client, capture_server)
    assert conv_messages(capture_server, "idem-2") == []
    # after uninstrument, a new instance can attach again
    again = GreenflashInstrumentor().instrument()
    try:
        assert again.is_instrumented
    finally:
        again.uninstrument()


def test_import_error_names_the_extra_or_the_version_needed(monkeypatch):
    from gf_integrations.llamaindex import _requires

    _requires.check_framework()  # the installed release is enough

    with monkeypatch.context() as m:  # no llama-index-core at all
        m.setitem(sys.modules, "llama_index", None)
        m.setitem(sys.modules, "llama_index.core", None)
        with pytest.raises(ImportError, match=r"pip install 'gf-integrations\[llamaindex\]'"):
            _requires.check_framework()

    with monkeypatch.context() as m:  # installed, but older than the floor
        m.setattr(importlib.metadata, "version", lambda name: "0.11.23")
        with pytest.raises(ImportError) as too_old:
            _requires.check_framework()
    assert str(too_old.value) == (
        "gf_integrations.llamaindex needs llama-index-core >= 0.12 (installed: 0.11.23)"
    )


def test_handler_errors_are_logged_once_and_never_reach_the_host(
    inst, gf_client, caplog, monkeypatch
):
    def explode(*args: Any, **kwargs: Any) -> None:
        raise KeyError("bug in our handler")

    monkeypatch.setattr(inst._engine.events, "on_chat_start", explode)
    with caplog.at_level(logging.WARNING, logger="gf_integrations"):
        for _ in range(3):
            assert Settings.llm.chat(sys_user("still works")).message.content
    warnings = [r for r in caplog.records if "LLMChatStartEvent" in r.getMessage()]
    assert len(warnings) == 1
    # the exception's type, never its text (it may quote the host's data)
    assert "KeyError" in warnings[0].getMessage()
    assert "bug in our handler" not in caplog.text


# -- cross-integration dedup -------------------------------------------------------------------


class ProbingLLM(MockLLM):
    """Records what ``outer_llm_capture_active()`` says inside the provider call."""

    seen: list[bool] = []

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kw: Any) -> CompletionResponse:
        ProbingLLM.seen.append(outer_llm_capture_active())
        return CompletionResponse(text="ok")


def test_capture_probe_is_active_inside_recorded_llm_calls(inst, gf_client):
    ProbingLLM.seen = []
    llm = ProbingLLM()
    assert outer_llm_capture_active() is False
    llm.chat(sys_user("sync"))
    llm.complete("direct")

    async def main() -> None:
        await llm.achat(sys_user("async"))
        await llm.acomplete("async direct")

    asyncio.run(main())
    assert ProbingLLM.seen == [True, True, True, True]
    assert outer_llm_capture_active() is False
    inst.uninstrument()
    llm.complete("not instrumented")
    assert ProbingLLM.seen[-1] is False


class ProbingStreamLLM(MockLLM):
    """Like a provider client that sends its request lazily, inside the stream generator."""

    seen: list[bool] = []

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kw: Any) -> Any:
        def gen() -> Iterator[CompletionResponse]:
            ProbingStreamLLM.seen.append(outer_llm_capture_active())
            yield CompletionResponse(text="ok", delta="ok")

        return gen()


def test_capture_probe_is_active_while_a_recorded_stream_is_consumed(inst, gf_client):
    ProbingStreamLLM.seen = []
    llm = ProbingStreamLLM()
    list(llm.stream_chat(sys_user("top-level stream")))
    engine = SimpleChatEngine.from_defaults(llm=llm)
    "".join(engine.stream_chat("engine stream").response_gen)
    assert ProbingStreamLLM.seen == [True, True]
    assert outer_llm_capture_active() is False


# -- ReAct, multi-agent workflows, steps --------------------------------------------------------


def react_script(messages: Any, **kwargs: Any) -> ChatMessage:
    if any("Observation" in (m.content or "") for m in messages if m.role != MessageRole.SYSTEM):
        return ChatMessage(
            role="assistant",
            content="Thought: I can answer without using any more tools.\nAnswer: It is sunny.",
        )
    return ChatMessage(
        role="assistant",
        content="Thought: I need the weather.\nAction: get_weather\n"
        'Action Input: {"city": "Paris"}',
    )


@needs_scripted_agents
def test_react_agent_turn(inst, gf_client, capture_server):
    from llama_index.core.agent.workflow import ReActAgent

    llm = li_mock.MockFunctionCallingLLM(response_generator=react_script, is_chat_model=True)
    agent = ReActAgent(tools=[get_weather], llm=llm, system_prompt="Be a weather bot.")

    async def main() -> Any:
        with gf.conversation("react-1"):
            return await agent.run("Weather in Paris?")

    result = asyncio.run(main())
    settle(gf_client, capture_server)
    msgs = conv_messages(capture_server, "react-1")
    assert kinds(msgs) == [
        "user",
        "thought",
        "tool_call",
        "observation",
        "thought",
        "final_response",
    ]
    user, thought, call, obs, reasoning, final = msgs
    assert user["content"] == "Weather in Paris?"  # not the "Observation:" scaffolding
    assert thought["content"] == "I need the weather."
    assert (call["toolName"], call["input"]) == ("get_weather", {"city": "Paris"})
    assert call["parentExternalMessageId"] == thought["externalMessageId"]
    assert obs["parentExternalMessageId"] == call["externalMessageId"]
    assert obs["output"] == {"result": "Sunny in Paris"}
    assert reasoning["content"] == "I can answer without using any more tools."
    assert final["content"] == "It is sunny." == str(result.response.content)
    (prompt,) = system_prompts(capture_server, "react-1")
    assert "get_weather" in prompt  # the ReAct header the model saw, with its tools
    assert_state_empty(inst)


@needs_scripted_agents
def test_agent_workflow_and_steps(gf_client, capture_server):
    from llama_index.core.agent.workflow import AgentWorkflow

    inst = GreenflashInstrumentor(capture_steps=True).instrument()
    try:
        llm = li_mock.MockFunctionCallingLLM(response_generator=scripted_tools, is_chat_model=True)
        agent = FunctionAgent(
            name="weather",
            description="weather agent",
            tools=[get_weather, broken],
            llm=llm,
            system_prompt="You are a weather bot.",
        )
        workflow = AgentWorkflow(agents=[agent], root_agent="weather")

        async def main() -> Any:
            with gf.conversation("workflow-1"):
                return await workflow.run(user_msg="Weather in Paris?")

        asyncio.run(main())
        settle(gf_client, capture_server)
        msgs = conv_messages(capture_server, "workflow-1")
        core = [k for k in kinds(msgs) if k not in ("chain_start", "chain_end")]
        assert core == [
            "user",
            "thought",
            "tool_call",
            "tool_call",
            "observation",
            "tool_error",
            "final_response",
        ]
        steps = [m for m in msgs if m.get("messageType") in ("chain_start", "chain_end")]
        names = {m["content"] for m in steps}
        assert {"init_run", "setup_agent", "run_agent_step", "call_tool"} <= names
        starts = {m["externalMessageId"] for m in steps if m["messageType"] == "chain_start"}
        ends = [m for m in steps if m["messageType"] == "chain_end"]
        assert len(ends) == len(starts)
        assert all(m["parentExternalMessageId"] in starts for m in ends)
        assert_state_empty(inst)
    finally:
        inst.uninstrument()


def test_context_chat_engine_streaming_and_condense_step(inst, gf_client, capture_server, index):
    with gf.conversation("ce-context"):
        engine = index.as_chat_engine(chat_mode="context", system_prompt="Sys", llm=StreamingLLM())
        text = "".join(engine.stream_chat("capital?").response_gen)
    with gf.conversation("ce-condense"):
        engine = index.as_chat_engine(chat_mode="condense_plus_context")
        engine.chat("capital?")
        second = engine.chat("and more?")
    settle(gf_client, capture_server)
    msgs = conv_messages(capture_server, "ce-context")
    assert kinds(msgs) == ["user", "retrieval", "assistant"]
    assert msgs[-1]["content"] == text
    assert msgs[-1]["context"] == "Paris is the capital of France."
    (prompt,) = system_prompts(capture_server, "ce-context")
    assert "{{context_str}}" in prompt["components"][0]["content"]
    msgs = conv_messages(capture_server, "ce-condense")
    turn = ["user", "retrieval", "assistant"]
    assert kinds(msgs) == turn + turn  # the condense-question call is not an answer
    assert msgs[-1]["content"] == second.response
    assert_state_empty(inst)


@needs_scripted_agents
def test_query_engine_tool_inside_an_agent(inst, gf_client, capture_server, index):
    from llama_index.core.tools import QueryEngineTool

    def script(messages: Any, **kwargs: Any) -> ChatMessage:
        if any(m.role == MessageRole.TOOL for m in messages):
            return ChatMessage(role="assistant", content="Paris.")
        call = li_types.ToolCallBlock(
            tool_call_id="q1", tool_name="docs", tool_kwargs={"input": "capital"}
        )
        return ChatMessage(role="assistant", blocks=[call])

    tool = QueryEngineTool.from_defaults(index.as_query_engine(), name="docs", description="docs")
    llm = li_mock.MockFunctionCallingLLM(response_generator=script, is_chat_model=True)
    agent = FunctionAgent(tools=[tool], llm=llm)

    async def main() -> None:
        with gf.conversation("agent-qe"):
            await agent.run("What is the capital?")

    asyncio.run(main())
    settle(gf_client, capture_server)
    msgs = conv_messages(capture_server, "agent-qe")
    # the tool's own query and synthesis call are not user/assistant messages of the turn
    assert kinds(msgs) == [
        "user",
        "tool_call",
        "retrieval",
        "observation",
        "final_response",
    ]
    assert msgs[-1]["context"] == "Paris is the capital of France."
    assert_state_empty(inst)


@needs_scripted_agents
def test_capture_probe_inside_an_agents_async_stream(inst, gf_client):
    seen: list[bool] = []

    def script(messages: Any, **kwargs: Any) -> Any:
        async def agen() -> Any:
            seen.append(outer_llm_capture_active())  # the provider request happens here
            yield ChatMessage(role="assistant", content="done")

        return agen()

    llm = li_mock.MockFunctionCallingLLM(response_generator=script, is_chat_model=True)
    agent = FunctionAgent(tools=[get_weather], llm=llm)

    async def main() -> None:
        await agent.run("hi")
        seen.append(outer_llm_capture_active())

    asyncio.run(main())
    assert seen == [True, False]

"""LlamaIndex over the real OpenAI provider classes, on the fake OpenAI server.

Each row drives ``llama_index.llms.openai.OpenAI`` (or ``OpenAIResponses``, or ``OpenAILike``
as a chat or a completion-only model) and, for retrieval,
``llama_index.embeddings.openai.OpenAIEmbedding`` through the real wire format to
``tests/helpers/fake_openai.py`` on ``httpx.MockTransport``, and asserts the exact sequence
the capture server received: types, tool names, parsed inputs, parents, the answering
model (the fake resolves ``gpt-4o-mini`` to ``gpt-4o-mini-2024-07-18`` as the API does),
usage where the API sends it, the system prompt and the retrieved context.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("llama_index.llms.openai")
pytest.importorskip("llama_index.llms.openai_like")
pytest.importorskip("llama_index.embeddings.openai")

import llama_index.llms.openai as li_openai
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.span_handlers import BaseSpanHandler
from llama_index.embeddings.openai import OpenAIEmbedding
from llama_index.llms.openai import OpenAI
from llama_index.llms.openai_like import OpenAILike
from test_llamaindex import (
    assert_state_empty,
    conv_messages,
    kinds,
    needs_agent_streaming,
    needs_agent_workflow,
    settle,
    system_prompts,
)

import gf_integrations as gf
from gf_integrations.llamaindex import GreenflashInstrumentor
from helpers.fake_openai import FakeOpenAI
from helpers.usage import SAME_CALL

MODEL = "gpt-4o-mini"
ANSWERED_BY = "gpt-4o-mini-2024-07-18"  # what the API names in its response
EMBED_MODEL = "text-embedding-3-small"
SYSTEM = "You are terse."
QUESTION = "Weather in Paris?"
ANSWER = "Sunny in Paris."
DOC = "Paris is the capital of France."
# the usage the API sends, as recorded: the same as wrap_openai's and LangChain's
USAGE = SAME_CALL
# the legacy /completions endpoint reports only the three counts
COMPLETION_USAGE = {"inputTokens": 11, "outputTokens": 7, "totalTokens": 18}


@pytest.fixture
def fake() -> FakeOpenAI:
    return FakeOpenAI()


@pytest.fixture
def inst(gf_client: gf.GreenflashClient, fake: FakeOpenAI) -> Iterator[GreenflashInstrumentor]:
    """The instrumentor, with LlamaIndex's defaults pointed at the fake (never the internet)."""
    old_llm, old_embed = Settings._llm, Settings._embed_model
    Settings.llm = make_llm(fake)
    Settings.embed_model = OpenAIEmbedding(
        model=EMBED_MODEL,
        api_key="sk-test",
        api_base=fake.base_url,
        http_client=fake.http_client(),
        async_http_client=fake.async_http_client(),
    )
    instrumentor = GreenflashInstrumentor(external_user_id="u1").instrument()
    try:
        yield instrumentor
    finally:
        instrumentor.uninstrument()
        Settings._llm, Settings._embed_model = old_llm, old_embed


def make_llm(fake: FakeOpenAI, kind: str = "openai", stream_usage: bool = False) -> Any:
    """The provider class as a user configures it, over the fake's transport."""
    common: dict[str, Any] = {
        "model": MODEL,
        "api_key": "sk-test",
        "api_base": fake.base_url,
        "http_client": fake.http_client(),
        "async_http_client": fake.async_http_client(),
        "max_retries": 0,
    }
    if kind == "responses":
        return li_openai.OpenAIResponses(**common)  # the Responses API always reports usage
    if stream_usage:
        # the API sends usage in a stream only when asked (LlamaIndex drops the option
        # from calls that do not stream)
        common["additional_kwargs"] = {"stream_options": {"include_usage": True}}
    if kind == "openai_like":
        return OpenAILike(is_chat_model=True, is_function_calling_model=True, **common)
    if kind == "completion":
        # OpenAILike's default: a local server's legacy /completions endpoint, chat
        # messages flattened into one prompt
        return OpenAILike(**common)
    return OpenAI(**common)


def get_weather(city: str) -> str:
    """Weather for a city."""
    return f"Sunny in {city}"


def drive_agent(agent: Any, mode: str) -> str:
    """Run one agent turn in a conversation, as ``mode`` says; return the answer seen."""

    from llama_index.core.agent.workflow import AgentStream

    async def main() -> str:
        with gf.conversation("li-turn"):
            handler = agent.run(QUESTION)
            streamed = []
            if mode == "stream_events":
                async for ev in handler.stream_events():
                    if isinstance(ev, AgentStream):
                        streamed.append(ev.delta)
            result = await handler
            if mode == "stream_events" and agent.streaming:
                assert "".join(streamed).endswith(ANSWER)
            return str(result)

    return asyncio.run(main())


def _agents() -> Any:
    """The agent workflow classes (imported per test: llama-index-core 0.12.12 has them)."""
    import llama_index.core.agent.workflow as agents

    return agents


def by_id(msgs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {m["externalMessageId"]: m for m in msgs}


def props(m: dict[str, Any]) -> dict[str, Any]:
    """A message's properties without the latency (a measured figure), the provider's
    own usage object (kept as it came; ``usage`` is what is compared) and the cost
    estimate (there only with the prices extra: tests/prices)."""
    skip = ("latencyMs", "providerUsage", "costUsd", "pricing")
    return {k: v for k, v in (m.get("properties") or {}).items() if k not in skip}


# -- plain LLM calls ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["openai", "openai_like", "completion"])
@pytest.mark.parametrize("mode", ["chat", "stream_chat", "achat", "astream_chat"])
def test_llm_chat_calls(inst, gf_client, capture_server, fake, kind, mode):
    from llama_index.core.llms import ChatMessage

    fake.reply_text("Hello.")
    llm = make_llm(fake, kind, stream_usage=True)
    messages = [ChatMessage(role="system", content=SYSTEM), ChatMessage(role="user", content="Hi?")]

    async def call_async() -> str:
        if mode == "achat":
            return str((await llm.achat(messages)).message.content)
        return "".join([r.delta async for r in await llm.astream_chat(messages)])

    with gf.conversation("li-llm"):
        if mode == "chat":
            text = str(llm.chat(messages).message.content)
        elif mode == "stream_chat":
            text = "".join(r.delta for r in llm.stream_chat(messages))
        else:
            text = asyncio.run(call_async())
    assert text == "Hello."
    settle(gf_client, capture_server)

    (path,) = [r.path for r in fake.requests]
    assert path == ("/v1/completions" if kind == "completion" else "/v1/chat/completions")
    msgs = conv_messages(capture_server, "li-llm")
    assert kinds(msgs) == ["user", "assistant"]
    user, reply = msgs
    # the user's words, also when a completion-only model got them flattened into a prompt
    assert user["content"] == "Hi?"
    assert reply["content"] == "Hello."
    assert reply["model"] == ANSWERED_BY
    usage = USAGE if kind != "completion" else COMPLETION_USAGE
    assert props(reply) == {"usage": usage, "finishReason": "stop"}
    assert reply["parentExternalMessageId"] == user["externalMessageId"]
    assert system_prompts(capture_server, "li-llm") == [SYSTEM]
    assert_state_empty(inst)


# -- agents ---------------------------------------------------------------------------------


HAS_RESPONSES = hasattr(li_openai, "OpenAIResponses")
needs_responses = pytest.mark.skipif(
    not HAS_RESPONSES, reason="llama-index-llms-openai < 0.3.29 has no OpenAIResponses"
)
AGENT_MODES = [
    # (llm class, agent streaming, how the caller drives it)
    ("openai", True, "await"),
    ("openai", True, "stream_events"),
    ("openai", False, "await"),
    ("openai", False, "stream_events"),
    ("openai_like", True, "await"),
    ("openai_like", False, "stream_events"),
    pytest.param("responses", True, "await", marks=needs_responses),
    pytest.param("responses", False, "stream_events", marks=needs_responses),
]


@needs_agent_streaming
@pytest.mark.parametrize(("llm_kind", "streaming", "mode"), AGENT_MODES)
def test_function_agent(inst, gf_client, capture_server, fake, llm_kind, streaming, mode):
    fake.reply_tool_call("get_weather", {"city": "Paris"})
    fake.reply_text(ANSWER)
    llm = make_llm(fake, llm_kind, stream_usage=True)
    agent = _agents().FunctionAgent(
        tools=[get_weather], llm=llm, system_prompt=SYSTEM, streaming=streaming
    )
    assert drive_agent(agent, mode) == ANSWER
    settle(gf_client, capture_server)

    # what the provider API received: the tool call went out and came back as its result
    if llm_kind == "responses":
        bodies = fake.bodies_for("/responses")
        assert bodies[1]["input"][-1]["type"] == "function_call_output"
        usage, stop, calls = USAGE, "completed", "completed"
    else:
        bodies = fake.bodies_for("/chat/completions")
        assert bodies[1]["messages"][-1]["role"] == "tool"
        usage, stop, calls = USAGE, "stop", "tool_calls"
    assert [b.get("stream", False) for b in bodies] == [streaming, streaming]

    msgs = conv_messages(capture_server, "li-turn")
    assert kinds(msgs) == ["user", "tool_call", "observation", "final_response"]
    user, call, obs, final = msgs
    assert user["content"] == QUESTION
    assert call["toolName"] == "get_weather"
    assert call["input"] == {"city": "Paris"}  # parsed, not the wire's JSON string
    assert call["parentExternalMessageId"] == user["externalMessageId"]
    assert call["model"] == ANSWERED_BY
    assert props(call) == {"usage": usage, "finishReason": calls}
    assert obs["toolName"] == "get_weather"
    assert obs["output"] == {"result": "Sunny in Paris"}
    assert obs["parentExternalMessageId"] == call["externalMessageId"]
    assert final["content"] == ANSWER
    assert final["model"] == ANSWERED_BY
    assert props(final) == {"usage": usage, "finishReason": stop}
    # one usage per model call: the agent's workflow span that holds both carries none
    assert [m for m in msgs if "usage" in (m.get("properties") or {})] == [call, final]
    assert final["parentExternalMessageId"] == user["externalMessageId"]
    assert system_prompts(capture_server, "li-turn") == [SYSTEM]
    assert_state_empty(inst)


@needs_agent_workflow
def test_function_agent_over_a_loopback_port(inst, gf_client, capture_server, fake):
    """The same turn over real sockets: LlamaIndex's own HTTP clients, nothing injected."""
    fake.reply_tool_call("get_weather", {"city": "Paris"})
    fake.reply_text(ANSWER)
    with fake.serve() as base_url:
        llm = OpenAI(model=MODEL, api_key="sk-test", api_base=base_url, max_retries=0)
        agent = _agents().FunctionAgent(tools=[get_weather], llm=llm, system_prompt=SYSTEM)
        assert drive_agent(agent, "await") == ANSWER
    settle(gf_client, capture_server)
    msgs = conv_messages(capture_server, "li-turn")
    assert kinds(msgs) == ["user", "tool_call", "observation", "final_response"]
    assert msgs[1]["input"] == {"city": "Paris"}
    assert msgs[1]["model"] == msgs[3]["model"] == ANSWERED_BY
    assert props(msgs[3]) == {"finishReason": "stop"}  # streamed without include_usage
    assert [r.path for r in fake.requests] == ["/v1/chat/completions"] * 2
    assert_state_empty(inst)


@needs_agent_workflow
def test_function_agent_parallel_calls_a_failing_tool_and_a_second_turn(
    inst, gf_client, capture_server, fake
):
    from llama_index.core.workflow import Context

    from helpers.fake_openai import ToolCall

    def boom(x: int) -> str:
        """Fails."""
        raise ValueError("bad x")

    fake.reply_tool_calls(
        ToolCall("get_weather", {"city": "Paris"}), ToolCall("boom", {"x": 1}), text="Let me check."
    )
    fake.reply_text(ANSWER)
    fake.reply_tool_call("get_weather", {"city": "Rome"})
    fake.reply_text("Sunny in Rome too.")
    llm = make_llm(fake, stream_usage=True)
    agent = _agents().FunctionAgent(tools=[get_weather, boom], llm=llm, system_prompt=SYSTEM)
    ctx = Context(agent)

    async def main() -> None:
        with gf.conversation("li-turn"):
            await agent.run(QUESTION, ctx=ctx)
            await agent.run("And Rome?", ctx=ctx)

    asyncio.run(main())
    settle(gf_client, capture_server)
    msgs = conv_messages(capture_server, "li-turn")
    # the second turn resends the first one's history: each message is stored once
    assert kinds(msgs) == [
        *("user", "thought", "tool_call", "tool_call", "observation", "tool_error"),
        *("final_response", "user", "tool_call", "observation", "final_response"),
    ]
    user, thought, call_a, call_b, obs, err, final, user2, call_c, obs_c, final2 = msgs
    assert thought["content"] == "Let me check."
    assert thought["parentExternalMessageId"] == user["externalMessageId"]
    assert [call_a["input"], call_b["input"]] == [{"city": "Paris"}, {"x": 1}]
    for call in (call_a, call_b):
        assert call["parentExternalMessageId"] == thought["externalMessageId"]
    assert obs["parentExternalMessageId"] == call_a["externalMessageId"]
    assert err["toolName"] == "boom"
    assert err["parentExternalMessageId"] == call_b["externalMessageId"]
    assert "bad x" in err["content"]
    assert final["content"] == ANSWER
    assert final["parentExternalMessageId"] == user["externalMessageId"]
    assert user2["content"] == "And Rome?"
    assert call_c["input"] == {"city": "Rome"}
    assert call_c["parentExternalMessageId"] == user2["externalMessageId"]
    assert obs_c["parentExternalMessageId"] == call_c["externalMessageId"]
    assert final2["content"] == "Sunny in Rome too."
    assert final2["parentExternalMessageId"] == user2["externalMessageId"]
    assert system_prompts(capture_server, "li-turn") == [SYSTEM]
    assert_state_empty(inst)


@needs_agent_workflow
def test_function_agent_broken_arguments_are_kept_and_marked(inst, gf_client, capture_server, fake):
    """A model that sends arguments that are not JSON: kept verbatim, marked, never lost."""
    fake.reply_tool_call("get_weather", '{"city": "Par')
    fake.reply_text(ANSWER)
    agent = _agents().FunctionAgent(tools=[get_weather], llm=make_llm(fake), system_prompt=SYSTEM)
    drive_agent(agent, "await")
    settle(gf_client, capture_server)
    msgs = conv_messages(capture_server, "li-turn")
    call = next(m for m in msgs if m.get("messageType") == "tool_call")
    assert call["input"] == {"arguments": '{"city": "Par', "invalidJson": True}


@needs_agent_streaming
@pytest.mark.parametrize(("streaming", "mode"), [(True, "await"), (False, "stream_events")])
def test_react_agent(inst, gf_client, capture_server, fake, streaming, mode):
    fake.reply_text(
        'Thought: I need the weather.\nAction: get_weather\nAction Input: {"city": "Paris"}'
    )
    fake.reply_text(f"Thought: I can answer.\nAnswer: {ANSWER}")
    llm = make_llm(fake, stream_usage=True)
    agent = _agents().ReActAgent(
        tools=[get_weather], llm=llm, system_prompt=SYSTEM, streaming=streaming
    )
    assert drive_agent(agent, mode) == ANSWER
    settle(gf_client, capture_server)

    msgs = conv_messages(capture_server, "li-turn")
    assert kinds(msgs) == [
        "user",
        "thought",
        "tool_call",
        "observation",
        "thought",
        "final_response",
    ]
    user, thought, call, obs, closing, final = msgs
    assert user["content"] == QUESTION
    assert thought["content"] == "I need the weather."
    assert thought["parentExternalMessageId"] == user["externalMessageId"]
    assert call["toolName"] == "get_weather"
    assert call["input"] == {"city": "Paris"}
    assert call["parentExternalMessageId"] == thought["externalMessageId"]
    assert obs["output"] == {"result": "Sunny in Paris"}
    assert obs["parentExternalMessageId"] == call["externalMessageId"]
    assert closing["content"] == "I can answer."
    assert final["content"] == ANSWER
    for m in (thought, call, closing, final):
        assert m["model"] == ANSWERED_BY
    assert props(thought)["usage"] == USAGE
    assert props(final)["usage"] == USAGE
    # the system prompt is what the model received: ReAct's header around the user's text
    (prompt,) = system_prompts(capture_server, "li-turn")
    assert prompt == fake.bodies_for("/chat/completions")[0]["messages"][0]["content"]
    assert SYSTEM in prompt
    assert_state_empty(inst)


@needs_agent_workflow
def test_react_agent_reply_without_the_format(inst, gf_client, capture_server, fake):
    """Models often drop ReAct's format; LlamaIndex takes such a reply as the answer."""
    fake.reply_text(ANSWER)
    agent = _agents().ReActAgent(tools=[get_weather], llm=make_llm(fake), system_prompt=SYSTEM)
    assert drive_agent(agent, "await") == ANSWER
    settle(gf_client, capture_server)
    msgs = conv_messages(capture_server, "li-turn")
    assert kinds(msgs) == ["user", "final_response"]  # no thought repeating the answer
    assert msgs[1]["content"] == ANSWER
    assert msgs[1]["model"] == ANSWERED_BY
    assert_state_empty(inst)


# -- retrieval ------------------------------------------------------------------------------


@pytest.fixture
def index(inst: GreenflashInstrumentor, fake: FakeOpenAI) -> VectorStoreIndex:
    """Built outside any conversation: no message (the build is not a conversation)."""
    docs = [Document(text=DOC), Document(text="Rome is the capital of Italy.")]
    return VectorStoreIndex.from_documents(docs)


def assert_rag_turn(
    msgs: list[dict[str, Any]],
    question: str,
    answer: str,
    *,
    kind: str = "final_response",
    searched: str | None = None,
    top_text: str = DOC,
    usage: dict[str, Any] | None = USAGE,
) -> None:
    """user, retrieval (no embedding message for the query vector), answer with context."""
    assert kinds(msgs) == ["user", "retrieval", kind]
    user, retrieval, final = msgs
    assert user["content"] == question
    assert retrieval["input"] == {"query": searched or question}
    assert retrieval["properties"]["retriever"] == "VectorIndexRetriever"
    top = retrieval["output"]["documents"][0]
    assert top["text"] == top_text
    assert 0 < top["score"] <= 1
    assert final["content"] == answer
    assert final["model"] == ANSWERED_BY
    assert final["context"] == "\n\n".join(d["text"] for d in retrieval["output"]["documents"])
    if usage:
        assert props(final)["usage"] == usage
    else:
        assert "usage" not in props(final)
    for m in (retrieval, final):
        assert m["parentExternalMessageId"] == user["externalMessageId"]


QUERY_MODES = [
    ("openai", "query"),
    ("openai", "aquery"),
    ("openai", "stream"),
    ("openai", "astream"),
    ("completion", "query"),
    ("completion", "stream"),
]


@pytest.mark.parametrize(("kind", "mode"), QUERY_MODES)
def test_query_engine(inst, gf_client, capture_server, fake, index, kind, mode):
    fake.reply_text("Paris.")
    engine = index.as_query_engine(
        llm=make_llm(fake, kind), streaming=mode in ("stream", "astream")
    )
    question = "Capital of France?"

    async def run_async() -> str:
        with gf.conversation("li-rag"):
            response = await engine.aquery(question)
            if mode == "astream":
                return "".join([t async for t in response.async_response_gen()])
            return str(response)

    if mode in ("aquery", "astream"):
        text = asyncio.run(run_async())
    else:
        with gf.conversation("li-rag"):
            response = engine.query(question)
            text = "".join(response.response_gen) if mode == "stream" else str(response)
    assert text == "Paris."
    settle(gf_client, capture_server)

    # the query was embedded over the wire, but is not an embedding message
    assert fake.bodies_for("/embeddings")[-1]["input"] == [question]
    msgs = conv_messages(capture_server, "li-rag")
    # streams carry no usage unless the caller asks the API for it
    usage = None
    if mode in ("query", "aquery"):
        usage = USAGE if kind == "openai" else COMPLETION_USAGE
    assert_rag_turn(msgs, question, "Paris.", usage=usage)
    (prompt,) = system_prompts(capture_server, "li-rag")
    assert "{{context_str}}" in prompt["components"][0]["content"]
    assert prompt["variables"]["query_str"] == question
    assert_state_empty(inst)


@pytest.mark.parametrize("mode", ["chat", "achat", "stream_chat", "astream_chat"])
def test_condense_plus_context_chat_engine(inst, gf_client, capture_server, fake, index, mode):
    fake.reply_text("Paris.")
    fake.reply_text("Capital of Italy?")  # the condensed question
    fake.reply_text("Rome.")
    engine = index.as_chat_engine(chat_mode="condense_plus_context", system_prompt=SYSTEM)

    async def turn_async(message: str) -> str:
        if mode == "achat":
            return str(await engine.achat(message))
        response = await engine.astream_chat(message)
        return "".join([t async for t in response.async_response_gen()])

    def turn(message: str) -> str:
        if mode == "chat":
            return str(engine.chat(message))
        if mode == "stream_chat":
            return "".join(engine.stream_chat(message).response_gen)
        return asyncio.run(turn_async(message))

    with gf.conversation("li-chat"):
        assert turn("Capital of France?") == "Paris."
        assert turn("And Italy?") == "Rome."
    settle(gf_client, capture_server)

    msgs = conv_messages(capture_server, "li-chat")
    streamed = mode in ("stream_chat", "astream_chat")
    usage = None if streamed else USAGE
    assert_rag_turn(msgs[:3], "Capital of France?", "Paris.", kind="assistant", usage=usage)
    # the second turn searches with the condensed question; the condense call is no message
    assert_rag_turn(
        msgs[3:],
        "And Italy?",
        "Rome.",
        kind="assistant",
        searched="Capital of Italy?",
        top_text="Rome is the capital of Italy.",
        usage=usage,
    )
    prompts = system_prompts(capture_server, "li-chat")
    assert prompts, "the context template is the system prompt"
    assert all(SYSTEM in p["components"][0]["content"] for p in prompts)
    assert_state_empty(inst)


class HoldStreamChatExit(BaseSpanHandler[Any]):
    """Runs first: holds a chat engine's ``stream_chat`` span exit until LlamaIndex's own
    history thread has drained the answer stream (the order a busy machine can produce)."""

    def new_span(self, *args: Any, **kwargs: Any) -> None:
        return None

    def prepare_to_exit_span(self, *args: Any, **kwargs: Any) -> None:
        return None

    def prepare_to_drop_span(self, *args: Any, **kwargs: Any) -> None:
        return None

    def span_exit(self, id_: str, *args: Any, result: Any = None, **kwargs: Any) -> None:
        thread = getattr(result, "write_response_to_history_thread", None)
        if id_.startswith("CondensePlusContextChatEngine.stream_chat") and thread is not None:
            thread.join(10)


def test_chat_engine_stream_drained_before_its_span_ends(
    inst, gf_client, capture_server, fake, index
):
    """The answer stream may end before the engine's span does: it is still the answer."""
    fake.reply_text("Paris.")
    fake.reply_text("Capital of Italy?")
    fake.reply_text("Rome.")
    engine = index.as_chat_engine(chat_mode="condense_plus_context", system_prompt=SYSTEM)
    dispatcher = get_dispatcher()
    hold = HoldStreamChatExit()
    dispatcher.span_handlers.insert(0, hold)
    try:
        with gf.conversation("li-chat"):
            assert "".join(engine.stream_chat("Capital of France?").response_gen) == "Paris."
            assert "".join(engine.stream_chat("And Italy?").response_gen) == "Rome."
    finally:
        dispatcher.span_handlers.remove(hold)
    settle(gf_client, capture_server)
    msgs = conv_messages(capture_server, "li-chat")
    assert kinds(msgs) == ["user", "retrieval", "assistant"] * 2
    assert [m["content"] for m in msgs if m.get("role") == "assistant"] == ["Paris.", "Rome."]
    assert_state_empty(inst)


# -- the embedding policy -----------------------------------------------------------------


def _sync_tools_run_in_the_callers_context() -> bool:
    """Whether LlamaIndex runs a sync tool's thread in the caller's context (0.14.22): before,
    what the tool does has no parent span and belongs to no conversation."""
    try:
        from llama_index.core.tools.function_tool import sync_to_async
    except ImportError:
        return False
    var: contextvars.ContextVar[bool] = contextvars.ContextVar("probe", default=False)

    async def main() -> bool:
        var.set(True)
        seen: bool = await sync_to_async(var.get)()
        return seen

    return asyncio.run(main())


@needs_agent_streaming
@pytest.mark.skipif(
    not _sync_tools_run_in_the_callers_context(),
    reason="llama-index-core < 0.14.22 runs a sync tool in a thread without the caller's context",
)
def test_embeddings_build_in_a_conversation_and_in_a_tool(inst, gf_client, capture_server, fake):
    """An index build in a conversation: one summary; an embedding a tool makes: one message."""
    with gf.conversation("li-build"):
        VectorStoreIndex.from_documents([Document(text=DOC), Document(text="Rome.")])
    inst.flush_pending()

    def similarity(text: str) -> str:
        """How close a text is to Paris."""
        vector = Settings.embed_model.get_text_embedding(text)
        return f"{len(vector)} dims"

    fake.reply_tool_call("similarity", {"text": "Lyon"})
    fake.reply_text("Done.")
    agent = _agents().FunctionAgent(tools=[similarity], llm=make_llm(fake), streaming=False)
    drive_agent(agent, "await")
    settle(gf_client, capture_server)

    (build,) = conv_messages(capture_server, "li-build")
    assert build["messageType"] == "embedding"
    assert build["model"] == EMBED_MODEL
    assert build["output"] == {"count": 2, "dimensions": 64}
    assert build["properties"]["summary"] == "index build"
    msgs = conv_messages(capture_server, "li-turn")
    assert kinds(msgs) == ["user", "tool_call", "embedding", "observation", "final_response"]
    assert msgs[2]["output"] == {"count": 1, "dimensions": 64}
    assert msgs[2]["model"] == EMBED_MODEL
    assert_state_empty(inst)

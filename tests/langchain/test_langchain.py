"""GreenflashCallbackHandler with plain LangChain runnables, against the loopback server.

LangGraph agents are in test_langchain_graph.py; shared fakes in this module.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.chat_history import InMemoryChatMessageHistory
from langchain_core.documents import Document
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import (
    FakeListChatModel,
    GenericFakeChatModel,
)
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda, RunnablePassthrough
from langchain_core.runnables.history import RunnableWithMessageHistory

import gf_integrations as gf
from gf_integrations.core.context import outer_llm_capture_active
from gf_integrations.langchain import (
    GreenflashCallbackHandler,
    instrument,
    run_state_size,
    uninstrument,
)
from gf_integrations.schema import MessageCreateRequest
from helpers.usage import SAME_CALL

# -- fakes -------------------------------------------------------------------------------


class NamedFake(GenericFakeChatModel):
    """GenericFakeChatModel with a model name (reaches metadata ls_model_name)."""

    model: str = "fake-gpt-1"


class ScriptedToolModel(BaseChatModel):
    """A deterministic tool-calling fake: reply depends only on the messages it gets.

    Last message human -> a tool call per ``tools`` entry (ids derived from the question);
    last message tool -> a final answer quoting the tool results. Safe under concurrency.
    """

    model: str = "fake-tools-1"
    tools: list[str] = ["get_weather"]
    usage: bool = True

    @property
    def _llm_type(self) -> str:
        return "scripted-tools"

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedToolModel:
        return self

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        last = messages[-1]
        # LangChain's UsageMetadata for the same call as the fake providers'
        usage = {
            "input_tokens": 11,
            "output_tokens": 7,
            "total_tokens": 18,
            "input_token_details": {"cache_read": 4, "cache_creation": 3},
            "output_token_details": {"reasoning": 2},
        }
        if last.type == "human":
            q = str(last.content)
            tag = q.split()[-1].strip("?") if q.split() else "x"
            calls = [
                {"name": name, "args": {"city": tag}, "id": f"call_{tag}_{i}", "type": "tool_call"}
                for i, name in enumerate(self.tools)
            ]
            msg = AIMessage("", tool_calls=calls, usage_metadata=usage)
        else:
            results = sorted(str(m.content) for m in messages if m.type == "tool")
            msg = AIMessage(
                "Answer: " + "; ".join(results),
                usage_metadata=usage,
                response_metadata={"finish_reason": "stop"},
            )
        return ChatResult(generations=[ChatGeneration(message=msg)])


class KB(BaseRetriever):
    """A fake retriever over two documents."""

    def _get_relevant_documents(self, query: str, *, run_manager: Any = None) -> list[Document]:
        return [
            Document(page_content="Paris is in France.", metadata={"source": "kb/1", "score": 0.9}),
            Document(page_content="Lyon too.", id="doc-2", metadata={"source": "kb/2"}),
        ]


# -- helpers ---------------------------------------------------------------------------


def kinds(msgs: list[dict[str, Any]]) -> list[str]:
    return [m.get("messageType") or m["role"] for m in msgs]


def delivered(server: Any, client: gf.GreenflashClient) -> list[dict[str, Any]]:
    assert client.flush(10)
    # the capture server appends a body only after answering it: wait for the last one
    assert server.wait_for(lambda s: len(s.requests) == len(s.attempts))
    for body in server.requests:
        MessageCreateRequest.model_validate(body)
    return server.messages


def by_conv(server: Any) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for body in server.requests:
        out.setdefault(body["externalConversationId"], []).extend(body["messages"])
    return out


def prompts_of(server: Any) -> list[Any]:
    return [b["systemPrompt"] for b in server.requests if "systemPrompt" in b]


@pytest.fixture(autouse=True)
def _no_leaks() -> Iterator[None]:
    before = run_state_size()
    yield
    uninstrument()
    assert run_state_size() == before, "per-run state leaked"


# -- plain chains ------------------------------------------------------------------------


def test_prompt_template_chain_sends_components_and_variables(gf_client, capture_server):
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You are a {persona}. Answer in {lang}, {{literally}}."), ("human", "{q}")]
    )
    chain = prompt | NamedFake(messages=iter(["Paris."]))
    handler = GreenflashCallbackHandler(external_user_id="u1", external_organization_id="acme")
    out = chain.invoke(
        {"persona": "geographer", "lang": "French", "q": "Capital of France?"},
        config={"callbacks": [handler]},
    )
    assert out.content == "Paris."
    msgs = delivered(capture_server, gf_client)
    assert kinds(msgs) == ["user", "assistant"]
    assert msgs[0]["content"] == "Capital of France?"
    assert msgs[1]["content"] == "Paris."
    assert msgs[1]["model"] == "fake-gpt-1"
    assert msgs[1]["parentExternalMessageId"] == msgs[0]["externalMessageId"]
    assert msgs[1]["properties"]["provider"] == "namedfake"
    assert msgs[1]["properties"]["latencyMs"] >= 0
    (body,) = capture_server.requests
    assert body["externalUserId"] == "u1"
    assert body["externalOrganizationId"] == "acme"
    assert body["systemPrompt"] == {
        "components": [
            {
                "content": "You are a {{persona}}. Answer in {{lang}}, {literally}.",
                "type": "system",
                "source": "customer",
                "isDynamic": True,
            }
        ],
        "variables": {"persona": "geographer", "lang": "French"},
    }


def test_plain_system_message_sent_as_system_prompt(gf_client, capture_server):
    model = NamedFake(messages=iter(["hello"]))
    model.invoke(
        [("system", "Be brief."), ("human", "hi")],
        config={"callbacks": [GreenflashCallbackHandler()]},
    )
    msgs = delivered(capture_server, gf_client)
    assert [(kinds([m])[0], m["content"]) for m in msgs] == [("user", "hi"), ("assistant", "hello")]
    assert msgs[1]["model"] == "fake-gpt-1"
    assert prompts_of(capture_server) == ["Be brief."]
    assert capture_server.requests[0]["externalUserId"] == "anonymous"


def test_tool_call_usage_and_finish_reason(gf_client, capture_server):
    model = ScriptedToolModel()
    handler = GreenflashCallbackHandler()
    model.invoke([("human", "weather in Paris?")], config={"callbacks": [handler]})
    model.invoke(
        [
            ("human", "weather in Lyon?"),
            AIMessage(
                "", tool_calls=[{"name": "get_weather", "args": {"city": "Lyon"}, "id": "c1"}]
            ),
            ToolMessage("Rainy", tool_call_id="c1"),
        ],
        config={"callbacks": [handler], "metadata": {"greenflash_conversation_id": "c2"}},
    )
    delivered(capture_server, gf_client)
    convs = by_conv(capture_server)
    first = next(v for k, v in convs.items() if k != "c2")
    assert kinds(first) == ["user", "tool_call"]
    assert first[1]["toolName"] == "get_weather"
    assert first[1]["input"] == {"city": "Paris"}
    assert first[1]["model"] == "fake-tools-1"
    assert first[1]["properties"]["usage"] == SAME_CALL
    second = convs["c2"]
    # history resent by the app: user, the earlier tool call and its result, then the answer
    assert kinds(second) == ["user", "tool_call", "observation", "final_response"]
    assert second[2]["parentExternalMessageId"] == second[1]["externalMessageId"]
    assert second[3]["content"] == "Answer: Rainy"
    assert second[3]["properties"]["finishReason"] == "stop"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_multi_turn_history_stored_once_in_order(gf_client, capture_server):
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You are {name}."), MessagesPlaceholder("history"), ("human", "{q}")]
    )
    model = FakeListChatModel(responses=["A1", "A2", "A3"])
    store: dict[str, InMemoryChatMessageHistory] = {}
    chat = RunnableWithMessageHistory(
        prompt | model,
        lambda sid: store.setdefault(sid, InMemoryChatMessageHistory()),
        input_messages_key="q",
        history_messages_key="history",
    )
    handler = GreenflashCallbackHandler(external_user_id="u1")
    for q in ("Q1", "Q2", "Q3"):
        chat.invoke(
            {"name": "Bot", "q": q},
            config={
                "callbacks": [handler],
                "configurable": {"session_id": "s1"},
                "metadata": {"greenflash_conversation_id": "chat-1"},
            },
        )
    msgs = delivered(capture_server, gf_client)
    assert [(m.get("role"), m["content"]) for m in msgs] == [
        ("user", "Q1"),
        ("assistant", "A1"),
        ("user", "Q2"),
        ("assistant", "A2"),
        ("user", "Q3"),
        ("assistant", "A3"),
    ]
    assert {b["externalConversationId"] for b in capture_server.requests} == {"chat-1"}
    # the system prompt is sent once for the conversation
    assert prompts_of(capture_server) == [
        {
            "components": [
                {
                    "content": "You are {{name}}.",
                    "type": "system",
                    "source": "customer",
                    "isDynamic": True,
                }
            ],
            "variables": {"name": "Bot"},
        }
    ]
    assert msgs[3]["parentExternalMessageId"] == msgs[2]["externalMessageId"]


def test_retriever_documents_and_context(gf_client, capture_server):
    prompt = ChatPromptTemplate.from_messages([("system", "Use: {context}"), ("human", "{q}")])
    chain = (
        {
            "context": KB() | RunnableLambda(lambda d: " ".join(x.page_content for x in d)),
            "q": RunnablePassthrough(),
        }
        | prompt
        | NamedFake(messages=iter(["In France."]))
    )
    chain.invoke("Where is Paris?", config={"callbacks": [GreenflashCallbackHandler()]})
    msgs = delivered(capture_server, gf_client)
    # the retrieval is emitted after the user message it serves, parented to it
    assert kinds(msgs) == ["user", "retrieval", "assistant"]
    ret = msgs[1]
    assert ret["parentExternalMessageId"] == msgs[0]["externalMessageId"]
    assert ret["content"] == "Where is Paris?"
    assert ret["output"]["documents"] == [
        {
            "id": "kb/1",
            "text": "Paris is in France.",
            "metadata": {"source": "kb/1", "score": 0.9},
            "score": 0.9,
        },
        {"id": "doc-2", "text": "Lyon too.", "metadata": {"source": "kb/2"}},
    ]
    assert ret["properties"]["retriever"] == "KB"
    assert msgs[2]["context"] == "Paris is in France.\n\nLyon too."


class DownKB(BaseRetriever):
    def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
        raise ConnectionError("kb down")


def test_failing_branch_of_a_streamed_parallel(gf_client, capture_server):
    # the failing branch stops the parallel; LangChain leaves the sibling branch's stream
    # suspended in the exception's traceback (a reference cycle) and ends that run when the
    # stream is collected, after the root ended: the late end releases it
    chain = (
        {"context": DownKB(), "q": RunnablePassthrough()}
        | ChatPromptTemplate.from_messages([("system", "Use: {context}"), ("human", "{q}")])
        | NamedFake(messages=iter(["never"]))
    )
    config: Any = {"callbacks": [GreenflashCallbackHandler()]}
    with pytest.raises(ConnectionError, match="kb down"):
        list(chain.stream("Where is Paris?", config=config))
    msgs = delivered(capture_server, gf_client)
    gc.collect()
    assert kinds(msgs) == ["retrieval"]


def test_stream_and_abandoned_stream(gf_client, capture_server):
    handler = GreenflashCallbackHandler(external_conversation_id="c-stream")
    model = NamedFake(messages=iter(["hello big world", "never finished here"]))
    chunks = [c.content for c in model.stream("hi", config={"callbacks": [handler]})]
    assert "".join(chunks) == "hello big world"
    stream = model.stream("again", config={"callbacks": [handler]})
    next(stream)
    stream.close()  # abandoned: LangChain reports GeneratorExit
    msgs = delivered(capture_server, gf_client)
    # the abandoned stream keeps what the user saw, flagged partial, and is not an error
    assert [(kinds([m])[0], m["content"]) for m in msgs] == [
        ("user", "hi"),
        ("assistant", "hello big world"),
        ("user", "again"),
        ("assistant", "never"),
    ]
    assert msgs[1]["model"] == "fake-gpt-1"
    assert "partial" not in msgs[1]["properties"]
    assert msgs[3]["properties"]["partial"] is True
    assert "error" not in msgs[3]["properties"]


def test_async_astream_and_conversation_scope(gf_client, capture_server):
    prompt = ChatPromptTemplate.from_messages([("human", "{q}")])
    model = NamedFake(messages=iter(["one", "two"]))
    chain = prompt | model

    async def main() -> None:
        handler = GreenflashCallbackHandler()
        with gf.conversation("scoped-1", external_user_id="u-scope"):
            await chain.ainvoke({"q": "first"}, config={"callbacks": [handler]})
            async for _ in chain.astream({"q": "second"}, config={"callbacks": [handler]}):
                pass

    asyncio.run(main())
    msgs = delivered(capture_server, gf_client)
    assert [(m["role"], m["content"]) for m in msgs] == [
        ("user", "first"),
        ("assistant", "one"),
        ("user", "second"),
        ("assistant", "two"),
    ]
    assert {
        (b["externalConversationId"], b["externalUserId"]) for b in capture_server.requests
    } == {("scoped-1", "u-scope")}


def test_batch_gives_one_conversation_per_root(gf_client, capture_server):
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | FakeListChatModel(
        responses=["r"]
    )
    chain.batch(
        [{"q": "a"}, {"q": "b"}, {"q": "c"}], config={"callbacks": [GreenflashCallbackHandler()]}
    )
    convs = by_conv(capture_server) if delivered(capture_server, gf_client) else {}
    assert sorted(kinds(v) == ["user", "assistant"] for v in convs.values()) == [True] * 3
    assert sorted(v[0]["content"] for v in convs.values()) == ["a", "b", "c"]


def test_identity_resolution_order(gf_client, capture_server):
    model = FakeListChatModel(responses=["r"])
    md = {
        "greenflash_conversation_id": "md-conv",
        "greenflash_user_id": "md-user",
        "greenflash_organization_id": "md-org",
        "thread_id": "th-ignored",
    }
    model.invoke("1", config={"callbacks": [GreenflashCallbackHandler()], "metadata": md})
    model.invoke(
        "2",
        config={
            "callbacks": [
                GreenflashCallbackHandler(
                    external_conversation_id="arg-conv", external_user_id="arg-user"
                )
            ],
            "metadata": md,
        },
    )
    with gf.conversation("scope-conv"):
        model.invoke("3", config={"callbacks": [GreenflashCallbackHandler()], "metadata": md})
    model.invoke(
        "4", config={"callbacks": [GreenflashCallbackHandler()], "metadata": {"thread_id": "th-1"}}
    )
    delivered(capture_server, gf_client)
    ids = {
        b["messages"][0]["content"]: (
            b["externalConversationId"],
            b["externalUserId"],
            b.get("externalOrganizationId"),
        )
        for b in capture_server.requests
    }
    assert ids == {
        "1": ("md-conv", "md-user", "md-org"),
        "2": ("arg-conv", "arg-user", "md-org"),
        "3": ("scope-conv", "md-user", "md-org"),
        "4": ("th-1", "anonymous", None),
    }


# -- duplicates, globals, cross-integration -----------------------------------------------


def test_same_handler_twice_and_instrument_plus_config_log_once(gf_client, capture_server):
    handler = GreenflashCallbackHandler(external_conversation_id="dup")
    model = NamedFake(messages=iter(["x", "y", "z"]), callbacks=[handler])
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | model
    chain.invoke({"q": "one"}, config={"callbacks": [handler]})  # constructor + config
    instrument(external_conversation_id="dup")
    assert instrument(external_conversation_id="dup") is instrument(external_conversation_id="dup")
    chain.invoke({"q": "two"}, config={"callbacks": [handler]})  # + instrument()
    other = GreenflashCallbackHandler(external_conversation_id="dup")
    chain.invoke({"q": "three"}, config={"callbacks": [handler, other]})  # two instances
    uninstrument()
    msgs = delivered(capture_server, gf_client)
    assert [m["content"] for m in msgs] == ["one", "x", "two", "y", "three", "z"]


def test_instrument_records_without_callbacks_and_uninstrument_stops(gf_client, capture_server):
    model = FakeListChatModel(responses=["r1", "r2"])
    handler = instrument(external_conversation_id="global")
    model.invoke("with")
    uninstrument()
    model.invoke("without")
    msgs = delivered(capture_server, gf_client)
    assert [m["content"] for m in msgs] == ["with", "r1"]
    assert isinstance(handler, GreenflashCallbackHandler)


class ProbingModel(BaseChatModel):
    """Records what an inner OpenAI wrapper would see while the model runs."""

    seen: list[bool] = []

    @property
    def _llm_type(self) -> str:
        return "probing"

    def _generate(
        self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self.seen.append(outer_llm_capture_active())
        return ChatResult(generations=[ChatGeneration(message=AIMessage("ok"))])

    async def _agenerate(
        self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self.seen.append(outer_llm_capture_active())
        return ChatResult(generations=[ChatGeneration(message=AIMessage("ok"))])


def test_capture_probe_marks_llm_runs_only(gf_client, capture_server):
    model = ProbingModel(seen=[])
    handler = GreenflashCallbackHandler()
    in_lambda: list[bool] = []
    chain = RunnableLambda(lambda x: in_lambda.append(outer_llm_capture_active()) or x) | model
    chain.invoke("hi", config={"callbacks": [handler]})
    asyncio.run(chain.ainvoke("hi", config={"callbacks": [handler]}))
    list(model.stream("hi", config={"callbacks": [handler]}))
    model.invoke("no handler")
    assert model.seen == [True, True, True, False]
    assert in_lambda == [False, False]
    assert outer_llm_capture_active() is False  # the marker does not outlive the run
    assert delivered(capture_server, gf_client)


# -- robustness ----------------------------------------------------------------------------


def test_hook_failures_never_reach_the_host_and_log_once(
    gf_client, capture_server, caplog, monkeypatch
):
    def boom(event: Any) -> bool:
        raise RuntimeError("recorder exploded")

    monkeypatch.setattr(gf_client, "record", boom)
    handler = GreenflashCallbackHandler()
    model = FakeListChatModel(responses=["fine"])
    with caplog.at_level(logging.WARNING, logger="gf_integrations"):
        for _ in range(3):
            assert model.invoke("x", config={"callbacks": [handler]}).content == "fine"
        # garbage straight into the hooks: still nothing raised
        rid = uuid.uuid4()
        handler.on_chat_model_start(None, None, run_id=rid)  # type: ignore[arg-type]
        handler.on_llm_end(None, run_id=rid)  # type: ignore[arg-type]
        handler.on_tool_end(object(), run_id=uuid.uuid4())
    ours = [r for r in caplog.records if "RuntimeError" in r.getMessage()]
    assert len(ours) == 1
    # the exception's type, never its text (it may quote the host's data)
    assert "recorder exploded" not in caplog.text


def test_runs_that_never_end_are_swept(gf_client):
    import gf_integrations.langchain as lc

    handler = GreenflashCallbackHandler()
    before = run_state_size()
    orphan = uuid.uuid4()
    handler.on_chain_start({}, {}, run_id=orphan)
    assert run_state_size() == before + 1
    lc._sweep(0.0)
    assert run_state_size() == before
    handler.on_chain_end({}, run_id=orphan)  # late end of a swept run: ignored


def test_noop_handler_floor_unchanged(gf_client, capture_server):
    # a plain BaseCallbackHandler alongside ours does not change what we record
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | FakeListChatModel(
        responses=["r"]
    )
    chain.invoke(
        {"q": "q"}, config={"callbacks": [BaseCallbackHandler(), GreenflashCallbackHandler()]}
    )
    assert kinds(delivered(capture_server, gf_client)) == ["user", "assistant"]

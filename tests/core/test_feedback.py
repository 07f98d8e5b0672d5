"""gf.rate / gf.track_event / gf.identify_*: from what the caller holds right after a
call to what a real collector (or loopback server) stored, through the same uploader as
the messages. The frameworks are the real ones, on their own fakes or a mock OpenAI API."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette")

import gf_integrations as gf
from gf_integrations.collector import RunningCollector

PRODUCT = "shop"


@pytest.fixture
def client(collector: RunningCollector) -> Iterator[gf.GreenflashClient]:
    """The default client, pointed at the collector, with a product id."""
    import gf_integrations.client as client_mod

    c = gf.GreenflashClient(
        base_url=collector.base_url, product_id=PRODUCT, flush_interval=0.05, sender="thread"
    )
    previous, client_mod._default = client_mod._default, c
    try:
        yield c
    finally:
        client_mod._default = previous
        c.shutdown(timeout=2)


def answers(col: RunningCollector, conv: str) -> dict[str, dict[str, Any]]:
    """The conversation's messages by externalMessageId."""
    return {m["externalMessageId"]: m for m in col.messages(conv, PRODUCT)}


def rated(col: RunningCollector, conv: str) -> list[tuple[str | None, float, str | None]]:
    """(content of the rated message, or None for the conversation, rating, feedback)."""
    by_id = {m["id"]: m for m in col.messages(conv, PRODUCT)}
    return [
        (by_id[r["messageId"]]["content"] if r["messageId"] else None, r["rating"], r["feedback"])
        for r in col.ratings(conv, PRODUCT)
    ]


# -- LangChain -------------------------------------------------------------------------


def test_langchain_run_id_and_handler_rate_the_answer_they_produced(client, collector):
    from langchain_core.language_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.prompts import ChatPromptTemplate

    from gf_integrations.langchain import GreenflashCallbackHandler

    model = GenericFakeChatModel(messages=iter([AIMessage("Team plan."), AIMessage("Yes, SSO.")]))
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | model
    handler = GreenflashCallbackHandler(external_user_id="u1", external_conversation_id="lc-1")
    run_id = uuid.uuid4()
    chain.invoke({"q": "Which plan?"}, config={"callbacks": [handler], "run_id": run_id})
    assert gf.rate(run_id, 1, rating_min=0, rating_max=1, feedback="spot on")
    chain.invoke({"q": "With SSO?"}, config={"callbacks": [handler]})
    assert gf.rate(handler, 2, rating_min=1, rating_max=5)  # its last root run
    assert gf.rate(str(run_id), 1, rating_min=0, rating_max=1, feedback="still spot on")
    assert client.flush(10)
    assert sorted(rated(collector, "lc-1")) == [
        ("Team plan.", 1.0, "still spot on"),  # the later rating of the same answer wins
        ("Yes, SSO.", 2.0, None),
    ]


def test_langchain_agent_run_rates_its_final_answer_not_the_tool_call(client, collector):
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.runnables import RunnableConfig, RunnableLambda
    from test_langchain import ScriptedToolModel

    from gf_integrations.langchain import GreenflashCallbackHandler

    model = ScriptedToolModel()

    def agent(question: str, config: RunnableConfig) -> str:
        history: list[Any] = [HumanMessage(question)]
        ask = model.invoke(history, config)
        history += [ask, ToolMessage("Sunny", tool_call_id=ask.tool_calls[0]["id"])]
        return str(model.invoke(history, config).content)

    run_id = uuid.uuid4()
    handler = GreenflashCallbackHandler(external_conversation_id="lc-agent")
    RunnableLambda(agent).invoke(
        "weather in Paris?", config={"callbacks": [handler], "run_id": run_id}
    )
    assert gf.rate(run_id, 5, rating_min=1, rating_max=5)
    assert client.flush(10)
    ((content, score, _),) = rated(collector, "lc-agent")
    assert (content, score) == ("Answer: Sunny", 5.0)
    final = [m for m in collector.messages("lc-agent", PRODUCT) if m["content"] == content]
    assert final[0]["messageType"] == "final_response"


def test_a_run_that_ended_without_an_answer_rates_its_conversation(client, collector, caplog):
    from test_langchain import ScriptedToolModel

    from gf_integrations.langchain import GreenflashCallbackHandler

    run_id = uuid.uuid4()
    handler = GreenflashCallbackHandler(external_conversation_id="lc-tools-only")
    ScriptedToolModel().invoke(
        [("human", "weather in Oslo?")], config={"callbacks": [handler], "run_id": run_id}
    )
    with caplog.at_level(logging.WARNING, logger="gf_integrations"):
        assert gf.rate(run_id, 0, rating_min=0, rating_max=1)
        assert client.flush(10)
    assert rated(collector, "lc-tools-only") == [(None, 0.0, None)]
    assert "goes to its conversation 'lc-tools-only'" in caplog.text


# -- OpenAI ----------------------------------------------------------------------------


def test_openai_response_objects_and_ids_rate_their_answers(client, collector):
    from test_openai import MockAPI, make_openai

    from gf_integrations.openai import wrap_openai

    oai = wrap_openai(make_openai(MockAPI()), external_user_id="u2")
    question = [{"role": "user", "content": "Capital of Italy?"}]
    with gf.conversation("oai-chat"):
        chat = oai.chat.completions.create(model="gpt-4o-mini", messages=question)
    with gf.conversation("oai-responses"):
        resp = oai.responses.create(model="gpt-4o-mini", input="Capital of Spain?")
    with gf.conversation("oai-stream"):
        stream = oai.chat.completions.create(model="gpt-4o-mini", messages=question, stream=True)
        (chunk_id,) = {chunk.id for chunk in stream}
    assert gf.rate(chat, 5, rating_min=1, rating_max=5)  # the response object
    assert gf.rate(resp.id, 4, rating_min=1, rating_max=5, feedback="good")  # its id
    assert gf.rate(chunk_id, 1, rating_min=1, rating_max=5, feedback="wrong city")
    assert client.flush(10)
    assert rated(collector, "oai-chat") == [(chat.choices[0].message.content, 5.0, None)]
    assert rated(collector, "oai-responses") == [(resp.output_text, 4.0, "good")]
    ((content, score, feedback),) = rated(collector, "oai-stream")
    assert (score, feedback) == (1.0, "wrong city")
    assert [m["messageType"] for m in collector.messages("oai-stream", PRODUCT)] == [
        "user_message",
        "assistant_message",
    ]
    assert content == collector.messages("oai-stream", PRODUCT)[1]["content"]


# -- LlamaIndex ------------------------------------------------------------------------


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


# -- scopes, explicit ids, events, profiles ----------------------------------------------


def test_conversation_scope_and_explicit_ids(client, collector):
    with gf.conversation("scoped", external_user_id="u3") as scope:
        client.record(_user_turn(scope, "hi", "m-hi"))
        assert gf.rate(None, 4, rating_min=1, rating_max=5)  # the current conversation
    assert gf.rate(scope, 5, rating_min=1, rating_max=5, feedback="great chat")
    # explicit ids name things recorded earlier: nothing to wait for, so flush first here
    assert client.flush(10)
    assert gf.rate(gf.MessageId("m-hi"), 1, rating_min=0, rating_max=1)
    assert client.flush(10)
    assert gf.rate(gf.ConversationId("scoped"), 3, rating_min=1, rating_max=5)
    assert client.flush(10)
    assert sorted(rated(collector, "scoped"), key=str) == [
        ("hi", 1.0, None),
        (None, 3.0, None),  # one rating per target: the latest of the three
    ]


def _user_turn(scope: Any, text: str, mid: str) -> Any:
    from gf_integrations.core.events import RawMessage

    conv = gf.get_client().resolve()
    return RawMessage(conv, mid, {"role": "user", "content": text, "external_message_id": mid})


def test_track_event_takes_conversation_user_and_org_and_is_idempotent(client, collector):
    from langchain_core.language_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    from gf_integrations.langchain import GreenflashCallbackHandler

    run_id = uuid.uuid4()
    handler = GreenflashCallbackHandler(
        external_user_id="u4", external_organization_id="acme", external_conversation_id="ev-1"
    )
    GenericFakeChatModel(messages=iter([AIMessage("ok")])).invoke(
        "upgrade me", config={"callbacks": [handler], "run_id": run_id}
    )
    at = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
    for _ in range(2):  # the same event twice (a retried webhook): stored once
        assert gf.track_event(
            "upgrade", 49.5, conversation=run_id, influence="positive", event_at=at
        )
    assert gf.track_event("trial", True, conversation=run_id, event_at=at)
    assert gf.track_event("nps", "9", external_user_id="u5", insert_id="survey-1")
    assert gf.track_event("nps", "9", external_user_id="u5", insert_id="survey-1")
    assert client.flush(10)
    events = {e["eventType"]: e for e in collector.events("ev-1", PRODUCT)}
    assert set(events) == {"upgrade", "trial"}
    up = events["upgrade"]
    assert (up["value"], up["valueType"], up["influence"]) == ("49.5", "numeric", "positive")
    assert (up["externalUserId"], up["externalOrganizationId"]) == ("u4", "acme")
    assert up["eventAt"] == "2026-03-01T12:00:00.000000Z"
    assert (events["trial"]["value"], events["trial"]["valueType"]) == ("true", "boolean")
    assert collector.counts()["events"] == 3  # upgrade once, trial, nps once


def test_identify_is_sent_once_per_change_and_masked(make_client, capture_server):
    c = make_client(product_id=PRODUCT, mask="pii", sender="thread")
    assert gf.identify_user("u1", name="Ada", email="ada@example.com", plan="pro", client=c)
    assert gf.identify_user("u1", name="Ada", email="ada@example.com", plan="pro", client=c)
    assert gf.identify_user("u1", name="Ada", email="ada@example.com", plan="team", client=c)
    assert gf.identify_organization("acme", name="Acme", seats=5, client=c)
    assert gf.identify_organization("acme", name="Acme", seats=5, client=c)
    assert c.flush(10)
    assert capture_server.wait_for(lambda s: len(s.requests) == 3)
    users = [b for b in capture_server.requests if "externalUserId" in b]
    assert [u["properties"] for u in users] == [{"plan": "pro"}, {"plan": "team"}]
    assert {u["email"] for u in users} == {"[REDACTED_EMAIL]"}
    assert users[0]["name"] == "Ada"
    orgs = [b for b in capture_server.requests if "externalUserId" not in b]
    assert orgs == [{"externalOrganizationId": "acme", "name": "Acme", "properties": {"seats": 5}}]


# -- delivery: order, retries, sampling, never blocking, clear errors --------------------


def test_a_rating_follows_its_messages_and_a_retry_resends_the_same_body(
    make_client, capture_server
):
    from gf_integrations.core.events import LLMCall
    from helpers.capture_server import Reply

    c = make_client(product_id=PRODUCT, flush_interval=5.0, sender="thread")
    capture_server.script = [Reply(503), Reply(200), Reply(500), Reply(200)]
    conv = c.resolve(defaults=None, fallback_conversation_id="ordered")
    c.record(
        LLMCall(
            conv,
            "k1",
            messages=[{"role": "user", "content": "q"}],
            reply={"role": "assistant", "content": "a"},
        )
    )
    from gf_integrations.core.feedback import Rating
    from gf_integrations.core.targets import AnswerRef

    now = dt.datetime.now(dt.timezone.utc)
    rating = Rating(PRODUCT, 1.0, 0.0, 1.0, now, answer=AnswerRef(conv, "k1"))
    assert c.record(rating)
    assert c.flush(20)
    assert capture_server.wait_for(lambda s: len(s.requests) == 2)
    kinds = ["messages" if "messages" in b else "rating" for b in capture_server.attempts]
    assert kinds == ["messages", "messages", "rating", "rating"]
    assert capture_server.attempts[2] == capture_server.attempts[3]
    (messages_body, rating_body) = capture_server.requests
    assert rating_body["externalMessageId"] == messages_body["messages"][1]["externalMessageId"]


def test_a_conversation_rating_follows_messages_recorded_under_another_user(
    make_client, capture_server
):
    # The README's LlamaIndex case: the instrumentor records as "u3", while the
    # gf.conversation scope the caller rates knows no user. The rating must still wait
    # for the conversation's messages (it would be a 400 "unknown conversation" first).
    from gf_integrations.core.context import IdentityDefaults
    from gf_integrations.core.events import LLMCall
    from gf_integrations.core.feedback import Rating
    from gf_integrations.core.targets import AnswerRef
    from helpers.capture_server import Reply

    c = make_client(product_id=PRODUCT, flush_interval=5.0, sender="thread")
    capture_server.script = [Reply(503), Reply(200), Reply(200)]
    recorded = c.resolve(
        defaults=IdentityDefaults(external_conversation_id="scoped", external_user_id="u3")
    )
    c.record(
        LLMCall(
            recorded,
            "k1",
            messages=[{"role": "user", "content": "q"}],
            reply={"role": "assistant", "content": "a"},
        )
    )
    with gf.conversation("scoped") as scope:
        scope_conv = c.resolve(defaults=None, fallback_conversation_id="unused")
    assert scope_conv.external_user_id != recorded.external_user_id
    assert scope_conv.key == recorded.key
    now = dt.datetime.now(dt.timezone.utc)
    assert c.record(Rating(PRODUCT, 4.0, 1.0, 5.0, now, answer=AnswerRef(scope_conv)))
    assert scope is not None
    assert c.flush(20)
    kinds = ["messages" if "messages" in b else "rating" for b in capture_server.attempts]
    assert kinds == ["messages", "messages", "rating"]
    assert capture_server.requests[-1]["externalConversationId"] == "scoped"


def test_a_sampled_out_conversation_sends_neither_its_messages_nor_its_feedback(
    collector,
):
    from langchain_core.language_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    from gf_integrations.langchain import GreenflashCallbackHandler

    c = gf.GreenflashClient(
        base_url=collector.base_url, product_id=PRODUCT, sample_rate=0.0, sender="thread"
    )
    try:
        run_id = uuid.uuid4()
        handler = GreenflashCallbackHandler(client=c, external_conversation_id="dropped")
        GenericFakeChatModel(messages=iter([AIMessage("ok")])).invoke(
            "hi", config={"callbacks": [handler], "run_id": run_id}
        )
        assert gf.rate(run_id, 1, rating_min=0, rating_max=1, client=c)
        assert gf.track_event("upgrade", 1, conversation=run_id, client=c)
        assert gf.track_event("signup", 1, conversation=run_id, force_sample=True, client=c)
        assert c.flush(10)
        assert c.stats()["sampled_out"] == 3  # the call, its rating, the unforced event
        assert collector.conversations() == []
        assert collector.counts()["ratings"] == 0
        assert collector.counts()["events"] == 1  # forceSample always keeps
    finally:
        c.shutdown(timeout=2)


def test_rate_only_queues_even_while_the_server_hangs(make_client, capture_server):
    from helpers.capture_server import Reply

    c = make_client(product_id=PRODUCT, sender="thread")
    capture_server.default = Reply(delay=30)  # every request hangs until released
    for n in range(50):
        assert gf.rate(gf.ConversationId(f"c{n}"), 1, rating_min=0, rating_max=1, client=c)
    assert c.stats()["queued"] == 50  # all queued while nothing was answered
    assert capture_server.requests == []
    capture_server.release.set()
    capture_server.default = Reply()
    assert c.flush(10)


def test_invalid_arguments_raise_and_runtime_conditions_are_logged(client, caplog):
    with pytest.raises(ValueError, match="rating_min"):
        gf.rate(gf.MessageId("m"), 1, rating_min=1, rating_max=1)
    with pytest.raises(ValueError, match="outside"):
        gf.rate(gf.MessageId("m"), 6, rating_min=1, rating_max=5)
    with pytest.raises(TypeError, match="rating must be a number"):
        gf.rate(gf.MessageId("m"), "5", rating_min=1, rating_max=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        gf.rate(gf.MessageId("m"), float("nan"), rating_min=0, rating_max=1)
    with pytest.raises(ValueError, match="ISO-8601"):
        gf.rate(gf.MessageId("m"), 1, rating_min=0, rating_max=1, rated_at="yesterday")
    with pytest.raises(ValueError, match="influence"):
        gf.track_event("x", 1, influence="great")
    with pytest.raises(ValueError, match="quality_impact_score"):
        gf.track_event("x", 1, quality_impact_score=2)
    with pytest.raises(TypeError, match="value"):
        gf.track_event("x", [1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="external_user_id"):
        gf.identify_user("")
    with caplog.at_level(logging.WARNING, logger="gf_integrations"):
        assert gf.rate(object(), 1, rating_min=0, rating_max=1) is False
        assert gf.rate(uuid.uuid4(), 1, rating_min=0, rating_max=1) is False
        assert gf.rate(None, 1, rating_min=0, rating_max=1) is False  # no current scope
    assert "does not know the object" in caplog.text
    assert "does not know the UUID" in caplog.text


def test_without_a_product_id_nothing_is_sent_and_it_says_so(make_client, caplog):
    c = make_client(sender="thread")
    with caplog.at_level(logging.WARNING, logger="gf_integrations"):
        assert gf.rate(gf.MessageId("m"), 1, rating_min=0, rating_max=1, client=c) is False
        assert gf.track_event("x", 1, client=c) is False
    assert "needs a Greenflash product id" in caplog.text
    assert c.stats()["queued"] == 0


def test_feedback_that_cannot_be_delivered_is_spooled_and_resent_after_its_messages(
    make_client, capture_server, collector, tmp_path
):
    from langchain_core.language_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    from gf_integrations.langchain import GreenflashCallbackHandler
    from helpers.capture_server import Reply

    capture_server.default = Reply(503)  # Greenflash is down for the whole first run
    first = make_client(
        product_id=PRODUCT, spool_dir=str(tmp_path), retry_budget=0.3, max_backoff=0.05
    )
    run_id = uuid.uuid4()
    handler = GreenflashCallbackHandler(client=first, external_conversation_id="spooled")
    GenericFakeChatModel(messages=iter([AIMessage("ok")])).invoke(
        "hi", config={"callbacks": [handler], "run_id": run_id}
    )
    assert gf.rate(run_id, 1, rating_min=0, rating_max=1, feedback="kept", client=first)
    assert gf.track_event("upgrade", 1, conversation=run_id, client=first)
    assert first.flush(5) is False
    first.shutdown()
    spooled = sorted(p.name.partition("~")[2] for p in tmp_path.glob("*.json"))
    assert spooled == ["", "events.json", "ratings.json"]  # messages carry no path suffix
    # the next start, now reaching a (real) server: messages first, then their feedback
    for _ in range(2):  # a second start finds nothing left to send
        second = gf.GreenflashClient(base_url=collector.base_url, spool_dir=str(tmp_path))
        assert second.flush(10)
        second.shutdown()
    assert rated(collector, "spooled") == [("ok", 1.0, "kept")]
    assert [e["eventType"] for e in collector.events("spooled", PRODUCT)] == ["upgrade"]
    assert list(tmp_path.glob("*.json")) == []

"""gf.rate / gf.track_event on what LangChain runs produced (run ids, the handler), through
the real local collector; sampling and the spool with a LangChain run as the source."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette")

import gf_integrations as gf
from helpers.feedback import PRODUCT, default_client, rated


@pytest.fixture
def client(collector: Any) -> Iterator[gf.GreenflashClient]:
    with default_client(collector) as c:
        yield c


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

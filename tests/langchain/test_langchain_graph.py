"""GreenflashCallbackHandler with LangGraph agents, against the loopback capture server."""

from __future__ import annotations

import asyncio
import threading
import warnings
from typing import Any

import pytest

pytest.importorskip("langgraph")

from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.prebuilt import ToolNode
from langgraph.types import Command, interrupt
from test_langchain import ScriptedToolModel, by_conv, delivered, kinds, prompts_of

from gf_integrations.langchain import GreenflashCallbackHandler, run_state_size

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from langgraph.prebuilt import create_react_agent


@pytest.fixture(autouse=True)
def _no_leaks():
    before = run_state_size()
    yield
    assert run_state_size() == before, "per-run state leaked"


tool_threads: set[str] = set()


@tool
def get_weather(city: str) -> str:
    """Weather for a city."""
    tool_threads.add(threading.current_thread().name)
    return f"Sunny in {city}"


@tool
def get_time(city: str) -> str:
    """Local time in a city."""
    tool_threads.add(threading.current_thread().name)
    return f"Noon in {city}"


@tool
def broken(city: str) -> str:
    """Always fails."""
    raise ValueError(f"boom for {city}")


@tool
def book(city: str) -> str:
    """Book a trip; asks a human first."""
    answer = interrupt({"question": f"Book {city}?"})
    return f"Booked {city}: {answer}"


def agent(
    tools: list[Any], names: list[str] | None = None, tool_node: Any = None, **kw: Any
) -> Any:
    model = ScriptedToolModel(tools=names or [t.name for t in tools])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return create_react_agent(model, tool_node or tools, **kw)


def cfg(handler: GreenflashCallbackHandler, thread: str | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"callbacks": [handler]}
    if thread:
        c["configurable"] = {"thread_id": thread}
    return c


def test_react_agent_two_turns_one_conversation(gf_client, capture_server):
    graph = agent([get_weather], prompt="You are a weather bot.", checkpointer=InMemorySaver())
    handler = GreenflashCallbackHandler(external_user_id="u1")
    graph.invoke({"messages": [("user", "weather in Paris?")]}, config=cfg(handler, "th-1"))
    graph.invoke({"messages": [("user", "and Rome?")]}, config=cfg(handler, "th-1"))
    msgs = delivered(capture_server, gf_client)
    assert {b["externalConversationId"] for b in capture_server.requests} == {"th-1"}
    assert kinds(msgs) == ["user", "tool_call", "observation", "final_response"] * 2
    user, call, obs, final = msgs[:4]
    assert user["content"] == "weather in Paris?"
    assert call["toolName"] == "get_weather"
    assert call["input"] == {"city": "Paris"}
    assert call["model"] == "fake-tools-1"
    assert call["parentExternalMessageId"] == user["externalMessageId"]
    assert obs["parentExternalMessageId"] == call["externalMessageId"]
    assert obs["output"] == {"result": "Sunny in Paris"}
    assert obs["toolName"] == "get_weather"
    assert final["content"] == "Answer: Sunny in Paris"
    assert final["parentExternalMessageId"] == user["externalMessageId"]
    assert msgs[4]["content"] == "and Rome?"
    assert msgs[7]["content"] == "Answer: Sunny in Paris; Sunny in Rome"
    # LangGraph prompt= string: a plain system prompt, sent once
    assert prompts_of(capture_server) == ["You are a weather bot."]


def test_parallel_tool_calls_from_threads(gf_client, capture_server):
    graph = agent([get_weather, get_time])
    tool_threads.clear()
    graph.invoke({"messages": [("user", "plan Oslo")]}, config=cfg(GreenflashCallbackHandler()))
    msgs = delivered(capture_server, gf_client)
    assert kinds(msgs)[:3] == ["user", "tool_call", "tool_call"]
    assert sorted(kinds(msgs)[3:5]) == ["observation", "observation"]
    assert kinds(msgs)[5:] == ["final_response"]
    calls = {m["toolName"]: m["externalMessageId"] for m in msgs[1:3]}
    for obs in msgs[3:5]:
        assert obs["parentExternalMessageId"] == calls[obs["toolName"]]
    assert len(tool_threads) == 2  # the tools really ran concurrently on worker threads


def test_tool_error_handled_and_unhandled(gf_client, capture_server):
    # ToolNode's default changed (catch everything in langgraph-prebuilt 1.0.0, re-raise
    # later): say which. False re-raises; True continues with an error message
    raising_graph = agent([broken], tool_node=ToolNode([broken], handle_tool_errors=False))
    handled_graph = agent([broken], tool_node=ToolNode([broken], handle_tool_errors=True))
    handler = GreenflashCallbackHandler()
    out = handled_graph.invoke(
        {"messages": [("user", "try Oslo")]},
        config={"callbacks": [handler], "metadata": {"greenflash_conversation_id": "handled"}},
    )
    assert out["messages"][-1].content.startswith("Answer: Error: ValueError")
    with pytest.raises(ValueError, match="boom for Rome"):
        raising_graph.invoke(
            {"messages": [("user", "try Rome")]},
            config={"callbacks": [handler], "metadata": {"greenflash_conversation_id": "raised"}},
        )
    delivered(capture_server, gf_client)
    convs = by_conv(capture_server)
    assert kinds(convs["handled"]) == ["user", "tool_call", "tool_error", "final_response"]
    err = convs["handled"][2]
    assert err["toolName"] == "broken"
    assert err["parentExternalMessageId"] == convs["handled"][1]["externalMessageId"]
    assert "boom for Oslo" in err["content"]
    assert kinds(convs["raised"]) == ["user", "tool_call", "tool_error"]
    assert convs["raised"][2]["output"]["error"]["type"] == "ValueError"


def test_interrupt_is_not_an_error_and_resume_stays_in_conversation(gf_client, capture_server):
    graph = agent([book], checkpointer=InMemorySaver())
    handler = GreenflashCallbackHandler(capture_steps=True)
    first = graph.invoke({"messages": [("user", "trip to Nice")]}, config=cfg(handler, "hitl"))
    assert "__interrupt__" in first
    delivered(capture_server, gf_client)
    before_resume = kinds(capture_server.messages)
    graph.invoke(Command(resume="yes"), config=cfg(handler, "hitl"))
    msgs = delivered(capture_server, gf_client)
    assert {b["externalConversationId"] for b in capture_server.requests} == {"hitl"}
    assert "tool_error" not in kinds(msgs)
    no_steps = [m for m in msgs if m.get("messageType") not in ("chain_start", "chain_end")]
    assert kinds(no_steps) == ["user", "tool_call", "observation", "final_response"]
    assert no_steps[2]["content"] == "Booked Nice: yes"
    # the interrupted tools node ended (not errored) with an interrupted marker
    ends = [m for m in msgs[: len(before_resume)] if m.get("messageType") == "chain_end"]
    tools_end = [m for m in ends if m["content"] == "tools"]
    assert tools_end
    assert tools_end[0]["output"] == {"interrupted": "GraphInterrupt"}
    assert all("error" not in (m.get("output") or {}) for m in msgs)


def test_capture_steps_records_nodes_only_properly_parented(gf_client, capture_server):
    graph = agent([get_weather])
    graph.invoke(
        {"messages": [("user", "weather in Bern?")]},
        config=cfg(GreenflashCallbackHandler(capture_steps=True)),
    )
    msgs = delivered(capture_server, gf_client)
    steps = [
        (m["messageType"], m["content"])
        for m in msgs
        if m.get("messageType", "").startswith("chain")
    ]
    assert steps == [
        ("chain_start", "LangGraph"),
        ("chain_start", "agent"),
        ("chain_end", "agent"),
        ("chain_start", "tools"),
        ("chain_end", "tools"),
        ("chain_start", "agent"),
        ("chain_end", "agent"),
        ("chain_end", "LangGraph"),
    ]
    ids = {m["externalMessageId"]: m for m in msgs}
    root_start = msgs[0]["externalMessageId"]
    for m in msgs:
        if m.get("messageType") == "chain_start" and m["content"] != "LangGraph":
            assert m["parentExternalMessageId"] == root_start
        if m.get("messageType") == "chain_end":
            start = ids[m["parentExternalMessageId"]]
            assert (start["messageType"], start["content"]) == ("chain_start", m["content"])
    others = [m for m in msgs if not m.get("messageType", "").startswith("chain")]
    assert kinds(others) == ["user", "tool_call", "observation", "final_response"]


def test_fifty_concurrent_conversations_on_one_handler(gf_client, capture_server):
    graph = agent([get_weather], checkpointer=InMemorySaver())
    handler = GreenflashCallbackHandler(external_user_id="u-many")

    async def main() -> None:
        await asyncio.gather(
            *(
                graph.ainvoke(
                    {"messages": [("user", f"weather in City{i}?")]},
                    config=cfg(handler, f"conv-{i}"),
                )
                for i in range(50)
            )
        )

    asyncio.run(main())
    delivered(capture_server, gf_client)
    convs = by_conv(capture_server)
    assert sorted(convs) == sorted(f"conv-{i}" for i in range(50))
    for cid, msgs in convs.items():
        i = cid.split("-")[1]
        assert kinds(msgs) == ["user", "tool_call", "observation", "final_response"], cid
        assert msgs[0]["content"] == f"weather in City{i}?"
        assert msgs[2]["output"] == {"result": f"Sunny in City{i}"}
        assert msgs[2]["parentExternalMessageId"] == msgs[1]["externalMessageId"]
        assert msgs[3]["content"] == f"Answer: Sunny in City{i}"


def test_astream_events_and_stream_modes(gf_client, capture_server):
    graph = agent([get_weather])
    handler = GreenflashCallbackHandler()

    async def main() -> None:
        async for _ in graph.astream_events(
            {"messages": [("user", "weather in Graz?")]},
            config={"callbacks": [handler], "metadata": {"greenflash_conversation_id": "ev"}},
            version="v2",
        ):
            pass

    asyncio.run(main())
    for _ in graph.stream(
        {"messages": [("user", "weather in Linz?")]},
        config={"callbacks": [handler], "metadata": {"greenflash_conversation_id": "st"}},
        stream_mode="messages",
    ):
        pass
    delivered(capture_server, gf_client)
    convs = by_conv(capture_server)
    for cid in ("ev", "st"):
        assert kinds(convs[cid]) == ["user", "tool_call", "observation", "final_response"]

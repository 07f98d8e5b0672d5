"""The recorder's mapping rules against the Mapper alone: events in, wire messages out, no
server and no threads. What reaches a real endpoint is tested per integration; these pin
down the rules themselves (ids, history, tools, prompts, context, masking, truncation).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from gf_integrations.core.context import Conv
from gf_integrations.core.events import (
    LLMCall,
    Retrieval,
    SetSystemPrompt,
    SystemPrompt,
    ToolResult,
)
from gf_integrations.core.recorder import Mapper
from gf_integrations.core.safejson import Limits
from gf_integrations.schema import MessageItem

CONV = Conv("c1", "u1")
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def mapper(**kwargs: Any) -> Mapper:
    return Mapper(limits=kwargs.pop("limits", Limits()), **kwargs)


def call(key: str, messages: list[dict[str, Any]], reply: dict[str, Any], **kw: Any) -> LLMCall:
    return LLMCall(CONV, key, messages=messages, reply=reply, started_at=T0, ended_at=T0, **kw)


def kinds(out: list[Any]) -> list[str]:
    return [o.message.get("role") or o.message["messageType"] for o in out]


def test_every_message_validates_against_the_wire_schema() -> None:
    m = mapper()
    out = m.map(
        call(
            "r1",
            [{"role": "user", "content": "weather?"}],
            {
                "role": "assistant",
                "content": "checking",
                "tool_calls": [
                    {"id": "t1", "name": "get_weather", "arguments": '{"city": "Paris"}'}
                ],
            },
            model="gpt-x",
        )
    )
    out += m.map(ToolResult(CONV, "tool1", "get_weather", tool_call_id="t1", output="sunny"))
    assert kinds(out) == ["user", "thought", "tool_call", "observation"]
    for o in out:
        MessageItem.model_validate(o.message)


def test_resent_history_is_stored_once_and_only_the_new_turn_is_emitted() -> None:
    m = mapper()
    first = [{"role": "user", "content": "hi"}]
    out1 = m.map(call("r1", first, {"role": "assistant", "content": "hello"}))
    second = [*first, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"}]
    out2 = m.map(call("r2", second, {"role": "assistant", "content": "goodbye"}))
    assert [o.message.get("content") for o in out1] == ["hi", "hello"]
    assert [o.message.get("content") for o in out2] == ["bye", "goodbye"]
    # the reply is parented to the user message it answers
    assert out2[1].message["parentExternalMessageId"] == out2[0].message["externalMessageId"]


def test_tool_arguments_become_an_object_and_the_result_is_parented_to_its_call() -> None:
    m = mapper()
    out = m.map(
        call(
            "r1",
            [{"role": "user", "content": "weather?"}],
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "t1", "name": "get_weather", "arguments": '{"city": "Paris"}'}
                ],
            },
        )
    )
    tool_call = out[-1].message
    assert tool_call["messageType"] == "tool_call"
    assert tool_call["input"] == {"city": "Paris"}
    result = m.map(ToolResult(CONV, "k", "get_weather", tool_call_id="t1", error="boom"))
    assert kinds(result) == ["tool_error"]
    assert result[0].message["parentExternalMessageId"] == tool_call["externalMessageId"]


def test_the_system_prompt_is_sent_once_and_again_only_when_it_changes() -> None:
    m = mapper()
    prompt = SystemPrompt(
        components=[{"content": "You are a {{role}}.", "name": "persona"}],
        variables={"role": "geographer"},
    )
    m.map(SetSystemPrompt(CONV, prompt))
    out1 = m.map(call("r1", [{"role": "user", "content": "a"}], {"role": "assistant"}))
    out2 = m.map(call("r2", [{"role": "user", "content": "b"}], {"role": "assistant"}))
    assert out1[0].system_prompt == {
        "components": [{"content": "You are a {{role}}.", "name": "persona"}],
        "variables": {"role": "geographer"},
    }
    assert out2[0].system_prompt is None
    m.map(SetSystemPrompt(CONV, SystemPrompt(content="Be brief.")))
    out3 = m.map(call("r3", [{"role": "user", "content": "c"}], {"role": "assistant"}))
    assert out3[0].system_prompt == "Be brief."


def test_retrieved_text_becomes_the_next_answers_context() -> None:
    m = mapper()
    m.map(call("r0", [{"role": "user", "content": "q"}], {"role": "assistant", "content": "a"}))
    m.map(Retrieval(CONV, "ret", "q", documents=[{"id": "d1", "text": "Paris is in France."}]))
    out = m.map(
        call(
            "r1",
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
            {"role": "assistant", "content": "France."},
        )
    )
    assert out[-1].message["context"] == "Paris is in France."


def test_masking_reaches_content_input_output_and_properties_and_a_failing_mask_is_visible() -> (
    None
):
    m = mapper(mask=lambda v: "***" if isinstance(v, str) else v)
    out = m.map(
        call("r1", [{"role": "user", "content": "secret"}], {"role": "assistant", "content": "x"})
    )
    assert [o.message["content"] for o in out] == ["***", "***"]

    def broken(value: Any) -> Any:
        raise RuntimeError("mask bug")

    out = mapper(mask=broken).map(
        call("r1", [{"role": "user", "content": "secret"}], {"role": "assistant", "content": "x"})
    )
    assert out[0].message["content"] == "[masking failed]"


def test_long_text_is_truncated_with_a_visible_marker() -> None:
    m = mapper(limits=Limits(max_string=50))
    out = m.map(call("r1", [{"role": "user", "content": "x" * 500}], {"role": "assistant"}))
    content = out[0].message["content"]
    assert len(content) < 500
    assert content.startswith("x" * 10)
    assert "truncated" in content


def test_ids_are_deterministic_across_mappers() -> None:
    msgs = [{"role": "user", "content": "hi"}]
    reply = {"role": "assistant", "content": "hello"}
    ids1 = [o.message["externalMessageId"] for o in mapper().map(call("r1", msgs, reply))]
    ids2 = [o.message["externalMessageId"] for o in mapper().map(call("r1", msgs, reply))]
    assert ids1 == ids2
    assert len(set(ids1)) == 2


def test_the_answer_of_an_event_is_remembered_for_ratings() -> None:
    m = mapper()
    out = m.map(
        call("run-7", [{"role": "user", "content": "q"}], {"role": "assistant", "content": "a"})
    )
    assert m.answer_id(CONV, "run-7") == out[-1].message["externalMessageId"]
    assert m.answer_id(CONV, "run-unknown") is None


def test_sampling_drops_whole_conversations_deterministically() -> None:
    m = mapper(sample_rate=0.0)
    assert m.map(call("r1", [{"role": "user", "content": "q"}], {"role": "assistant"})) == []
    assert m.sampled_out == 1
    forced = Conv("c2", "u1", force_sample=True)
    event = LLMCall(forced, "r", messages=[{"role": "user", "content": "q"}], reply=None)
    assert kinds(m.map(event)) == ["user"]

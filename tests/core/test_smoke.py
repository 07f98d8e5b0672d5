"""End-to-end smoke test of the core: events in, wire requests out at a loopback server."""

from __future__ import annotations

from gf_integrations.core.events import LLMCall, ToolResult
from gf_integrations.schema import MessageCreateRequest


def test_agentic_turn_reaches_the_server_in_order(gf_client, capture_server):
    conv = gf_client.resolve(fallback_conversation_id="c1")
    system = {"role": "system", "content": "be nice"}
    user = {"role": "user", "content": "weather in Paris?"}
    call = {"role": "assistant", "content": "", "tool_calls": [
        {"id": "t1", "name": "get_weather", "arguments": {"city": "Paris"}}]}
    gf_client.record(LLMCall(conv, "r1", messages=[system, user], reply=call, model="m"))
    gf_client.record(ToolResult(conv, "tool-run", "get_weather", "t1", output="sunny"))
    tool = {"role": "tool", "content": "sunny", "tool_call_id": "t1"}
    gf_client.record(LLMCall(conv, "r2", messages=[system, user, call, tool],
                             reply={"role": "assistant", "content": "It is sunny"}, model="m"))
    assert gf_client.flush(5)
    for body in capture_server.requests:
        MessageCreateRequest.model_validate(body)
    msgs = capture_server.messages
    kinds = [m.get("messageType") or m.get("role") for m in msgs]
    assert kinds == ["user", "tool_call", "observation", "final_response"]
    assert capture_server.requests[0]["systemPrompt"] == "be nice"
    assert msgs[2]["parentExternalMessageId"] == msgs[1]["externalMessageId"]
    assert msgs[1]["toolName"] == "get_weather"
    assert msgs[1]["input"] == {"city": "Paris"}

"""What the OpenTelemetry tests read and fake: delivered messages, an OpenAI chat API."""

from __future__ import annotations

import json
from typing import Any

import httpx

import openai
from gf_integrations.schema import MessageCreateRequest
from helpers.fake_openai import CHAT_USAGE


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


def chat_api(request: httpx.Request) -> httpx.Response:
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
            "usage": CHAT_USAGE,  # the same call as every fake's (helpers/usage.py)
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


def weather_turn(client: openai.OpenAI) -> None:
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


def mock_openai() -> openai.OpenAI:
    return openai.OpenAI(
        api_key="sk-test",
        base_url="http://mock.invalid/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(chat_api)),
    )


WEATHER_TURN = [
    ("user", "Weather in Paris?", None),
    ("tool_call", "get_weather", 0, {"city": "Paris"}),
    ("observation", "sunny", 1),
    ("final_response", "It is sunny in Paris.", 0),
]

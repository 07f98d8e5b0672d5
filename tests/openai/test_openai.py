"""wrap_openai end to end: the real OpenAI client on an httpx.MockTransport that answers
like the API (JSON and SSE bodies), our real uploader, a real loopback capture server.

Every assertion is on what the capture server received, or on what the caller got back.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import inspect
import json
import logging
import struct
import subprocess
import sys
import warnings
from typing import Any

import httpx
import pytest
from openai.resources.chat.completions import Completions
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import BaseModel

import gf_integrations as gf
import gf_integrations.openai as gf_openai
import openai
from gf_integrations.common import once
from gf_integrations.core import context as gf_context
from gf_integrations.openai import wrap_openai
from helpers.capture import delivered, kinds
from helpers.fake_openai import CHAT_USAGE, RESPONSES_USAGE
from helpers.usage import SAME_CALL
from openai import AsyncAzureOpenAI, AsyncOpenAI, AzureOpenAI, OpenAI

# -- what the installed SDK has (feature probes: a test of what it lacks skips) ---------

HAS_RESPONSES = importlib.util.find_spec("openai.resources.responses") is not None
needs_responses = pytest.mark.skipif(
    not HAS_RESPONSES, reason="openai < 1.66 has no Responses API (client.responses)"
)
HAS_SAFETY_IDENTIFIER = "safety_identifier" in inspect.signature(Completions.create).parameters


def chat_helper(client: Any, name: str) -> Any:
    """The chat ``parse`` / ``stream`` helper: on chat.completions since openai 1.92, on
    beta.chat.completions before (its only place at the floor)."""
    res = client.chat.completions
    return getattr(res, name) if hasattr(res, name) else getattr(client.beta.chat.completions, name)


# -- a mock OpenAI API ----------------------------------------------------------------

USAGE = CHAT_USAGE  # the same call as every fake provider's (helpers/usage.py)
DATED = "-2024-07-18"  # the API answers with the dated snapshot of the requested model


def _sse(events: list[dict[str, Any]], named: bool = False, done: bool = True) -> bytes:
    out = []
    for e in events:
        head = f"event: {e['type']}\n" if named else ""
        out.append(f"{head}data: {json.dumps(e)}\n\n")
    if done:
        out.append("data: [DONE]\n\n")
    return "".join(out).encode()


def _user_turns(messages: list[dict[str, Any]]) -> int:
    return sum(1 for m in messages if m.get("role") == "user")


class MockAPI:
    """Answers chat, responses and embeddings requests the way the OpenAI API does."""

    def __init__(self, azure_model: str | None = None) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.azure_model = azure_model

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else {}
        self.bodies.append(body)
        self.paths.append(request.url.path)
        path = request.url.path
        if body.get("model") == "error-model":
            return httpx.Response(
                400,
                json={
                    "error": {
                        "message": "Invalid value for 'temperature'",
                        "type": "invalid_request_error",
                        "param": "temperature",
                        "code": None,
                    }
                },
            )
        if path.endswith("/chat/completions"):
            return self.chat(body)
        if path.endswith("/responses"):
            return self.responses(body)
        if path.endswith("/embeddings"):
            return self.embeddings(body)
        return httpx.Response(404, json={"error": {"message": "not found"}})

    # chat ------------------------------------------------------------------------------

    def chat_model(self, body: dict[str, Any]) -> str:
        return self.azure_model or body["model"] + DATED

    def chat(self, body: dict[str, Any]) -> httpx.Response:
        messages = body["messages"]
        last = messages[-1]
        tools = body.get("model") == "tool-model" and last.get("role") == "user"
        if body.get("response_format", {}).get("type") == "json_schema":
            message = {"role": "assistant", "content": json.dumps({"city": "Paris", "temp": 21})}
            finish = "stop"
        elif tools:
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "call_b",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": '{"tz": "CET"'},  # broken
                    },
                ],
            }
            finish = "tool_calls"
        elif body.get("model") == "refuse-model":
            message = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
            finish = "stop"
        else:
            message = {"role": "assistant", "content": f"Answer {_user_turns(messages)}"}
            finish = "stop"
        message.setdefault("refusal", None)
        message["annotations"] = []
        base = {
            "id": f"chatcmpl-{len(self.bodies)}",
            "created": 1764115200,
            "model": self.chat_model(body),
            "system_fingerprint": "fp_44709d6fcb",
            "service_tier": "default",
        }
        if not body.get("stream"):
            return httpx.Response(
                200,
                json={
                    **base,
                    "object": "chat.completion",
                    "choices": [
                        {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
                    ],
                    "usage": USAGE,
                },
            )
        include_usage = (body.get("stream_options") or {}).get("include_usage")
        base = {**base, "object": "chat.completion.chunk"}
        if include_usage:
            base["usage"] = None

        def chunk(delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
            return {
                **base,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
                ],
            }

        chunks = [chunk({"role": "assistant", "content": "", "refusal": None})]
        if message.get("tool_calls"):
            for i, tc in enumerate(message["tool_calls"]):
                args = tc["function"]["arguments"]
                chunks.append(
                    chunk(
                        {
                            "tool_calls": [
                                {
                                    "index": i,
                                    "id": tc["id"],
                                    "type": "function",
                                    "function": {"name": tc["function"]["name"], "arguments": ""},
                                }
                            ]
                        }
                    )
                )
                for j in range(0, len(args), 5):
                    piece = {"index": i, "function": {"arguments": args[j : j + 5]}}
                    chunks.append(chunk({"tool_calls": [piece]}))
        else:
            text = message["content"]
            for j in range(0, len(text), 3):
                chunks.append(chunk({"content": text[j : j + 3]}))
        chunks.append(chunk({}, finish))
        if include_usage:
            chunks.append({**base, "choices": [], "usage": USAGE})
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=_sse(chunks)
        )

    # responses ---------------------------------------------------------------------------

    def responses(self, body: dict[str, Any]) -> httpx.Response:
        n = len(self.bodies)
        rid = f"resp_{n:04d}"
        inp = body.get("input")
        items = [{"role": "user", "content": inp}] if isinstance(inp, str) else (inp or [])
        last = items[-1] if items else {}
        wants_tool = body.get("model") == "tool-model" and last.get("role") == "user"
        fmt = ((body.get("text") or {}).get("format") or {}).get("type")
        output: list[dict[str, Any]] = [
            {
                "type": "reasoning",
                "id": f"rs_{n}",
                "summary": [{"type": "summary_text", "text": "The user greets me."}],
            }
        ]
        if wants_tool:
            output.append(
                {
                    "type": "function_call",
                    "id": f"fc_{n}",
                    "call_id": "call_r1",
                    "name": "get_weather",
                    "arguments": '{"city": "Oslo"}',
                    "status": "completed",
                }
            )
            text = None
        else:
            users = sum(1 for i in items if i.get("role") == "user")
            text = (
                json.dumps({"city": "Oslo", "temp": 3})
                if fmt == "json_schema"
                else (f"Reply {users}")
            )
            output.append(
                {
                    "type": "message",
                    "id": f"msg_{n}",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}],
                }
            )
        response = {
            "id": rid,
            "object": "response",
            "created_at": 1764115200,
            "status": "completed",
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "metadata": {},
            "model": body["model"] + "-2025-04-14",
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": body.get("previous_response_id"),
            "temperature": 1.0,
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "text": {"format": {"type": "text"}},
            "usage": RESPONSES_USAGE,
        }
        if not body.get("stream"):
            return httpx.Response(200, json=response)
        seq = iter(range(1000))
        pending = {**response, "status": "in_progress", "output": [], "usage": None}
        events: list[dict[str, Any]] = [
            {"type": "response.created", "sequence_number": next(seq), "response": pending},
            {"type": "response.in_progress", "sequence_number": next(seq), "response": pending},
        ]
        for idx, item in enumerate(output):
            if item["type"] == "message":
                msg_id = item["id"]
                events.append(
                    {
                        "type": "response.output_item.added",
                        "sequence_number": next(seq),
                        "output_index": idx,
                        "item": {**item, "status": "in_progress", "content": []},
                    }
                )
                part = {"type": "output_text", "text": "", "annotations": []}
                events.append(
                    {
                        "type": "response.content_part.added",
                        "sequence_number": next(seq),
                        "item_id": msg_id,
                        "output_index": idx,
                        "content_index": 0,
                        "part": part,
                    }
                )
                assert text is not None
                for j in range(0, len(text), 3):
                    events.append(
                        {
                            "type": "response.output_text.delta",
                            "sequence_number": next(seq),
                            "item_id": msg_id,
                            "output_index": idx,
                            "content_index": 0,
                            "delta": text[j : j + 3],
                            "logprobs": [],
                        }
                    )
                events.append(
                    {
                        "type": "response.output_text.done",
                        "sequence_number": next(seq),
                        "item_id": msg_id,
                        "output_index": idx,
                        "content_index": 0,
                        "text": text,
                        "logprobs": [],
                    }
                )
                events.append(
                    {
                        "type": "response.content_part.done",
                        "sequence_number": next(seq),
                        "item_id": msg_id,
                        "output_index": idx,
                        "content_index": 0,
                        "part": {**part, "text": text},
                    }
                )
            else:
                events.append(
                    {
                        "type": "response.output_item.added",
                        "sequence_number": next(seq),
                        "output_index": idx,
                        "item": item,
                    }
                )
            events.append(
                {
                    "type": "response.output_item.done",
                    "sequence_number": next(seq),
                    "output_index": idx,
                    "item": item,
                }
            )
        events.append(
            {"type": "response.completed", "sequence_number": next(seq), "response": response}
        )
        return httpx.Response(
            200,
            headers={"content-type": "text/event-stream"},
            content=_sse(events, named=True, done=False),
        )

    # embeddings --------------------------------------------------------------------------

    def embeddings(self, body: dict[str, Any]) -> httpx.Response:
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        dims = body.get("dimensions") or 8
        data = []
        for i, _ in enumerate(inputs):
            vector = [0.25 * (i + 1) + k / 100 for k in range(dims)]
            if body.get("encoding_format") == "base64":
                packed = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
                data.append({"object": "embedding", "index": i, "embedding": packed})
            else:
                data.append({"object": "embedding", "index": i, "embedding": vector})
        return httpx.Response(
            200,
            json={
                "object": "list",
                "data": data,
                "model": "text-embedding-3-small",
                "usage": {"prompt_tokens": 4 * len(inputs), "total_tokens": 4 * len(inputs)},
            },
        )


def make_openai(api: MockAPI | None = None, **kw: Any) -> OpenAI:
    return OpenAI(
        api_key="test",
        base_url="http://mock/v1",
        max_retries=0,
        http_client=httpx.Client(transport=httpx.MockTransport(api or MockAPI())),
        **kw,
    )


def make_async_openai(api: MockAPI | None = None) -> AsyncOpenAI:
    return AsyncOpenAI(
        api_key="test",
        base_url="http://mock/v1",
        max_retries=0,
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(api or MockAPI())),
    )


SYSTEM = {"role": "system", "content": "You are a weather bot."}
WEATHER_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


# -- types and object identity ---------------------------------------------------------


def test_returns_the_same_client_and_unchanged_types(gf_client, capture_server):
    raw = make_openai()
    client = wrap_openai(raw, external_conversation_id="types")
    assert client is raw
    assert type(client) is OpenAI
    assert wrap_openai(client) is client  # twice: harmless, still one layer
    msgs = [SYSTEM, {"role": "user", "content": "hi"}]
    r = client.chat.completions.create(model="gpt-4o-mini", messages=msgs)
    assert type(r) is ChatCompletion
    assert r.choices[0].message.content == "Answer 1"
    s = client.chat.completions.create(model="gpt-4o-mini", messages=msgs, stream=True)
    assert type(s) is openai.Stream
    assert isinstance(s.response, httpx.Response)
    with s:
        chunks = list(s)
    assert all(type(c) is ChatCompletionChunk for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Answer 1"
    copy = client.with_options(timeout=5)
    assert type(copy) is OpenAI
    assert copy is not client
    copy.chat.completions.create(model="gpt-4o-mini", messages=msgs)
    msgs_out = delivered(gf_client, capture_server)
    # three chat calls with the same prompt: the user message once, one reply each time
    # (identical replies at the same position are the same message)
    assert kinds(msgs_out) == ["user", "assistant"]
    assert msgs_out[1]["content"] == "Answer 1"


def test_sync_and_async_wrappers_keep_signatures():
    client = wrap_openai(make_openai())
    sig = inspect.signature(client.chat.completions.create)
    assert "messages" in sig.parameters
    assert "self" not in sig.parameters
    assert client.chat.completions.create.__gf_wrapped__
    aclient = wrap_openai(make_async_openai())
    assert inspect.iscoroutinefunction(aclient.chat.completions.create)
    assert inspect.iscoroutinefunction(aclient.embeddings.create)
    assert inspect.iscoroutinefunction(chat_helper(aclient, "parse"))
    with pytest.raises(TypeError):
        wrap_openai(object())


def test_wrapping_patches_what_this_sdk_has():
    """Every endpoint this release has is ours; one it lacks is left absent (no error)."""
    for client in (wrap_openai(make_openai()), wrap_openai(make_async_openai())):
        wrapped = [client.chat.completions.create, client.embeddings.create]
        wrapped.append(chat_helper(client, "parse"))
        if HAS_RESPONSES:
            wrapped += [client.responses.create, client.responses.parse]
        else:
            assert not hasattr(client, "responses")
        assert all(getattr(m, "__gf_wrapped__", False) for m in wrapped)


# -- chat mapping ------------------------------------------------------------------------


def test_plain_chat_turn(gf_client, capture_server):
    client = wrap_openai(make_openai(), external_user_id="u1", properties={"app": "demo"})
    client.chat.completions.create(
        model="gpt-4o-mini", messages=[SYSTEM, {"role": "user", "content": "Weather?"}]
    )
    msgs = delivered(gf_client, capture_server)
    assert kinds(msgs) == ["user", "assistant"]
    req = capture_server.requests[0]
    assert req["systemPrompt"] == "You are a weather bot."
    assert req["externalUserId"] == "u1"
    assert req["properties"] == {"app": "demo"}
    user, reply = msgs
    assert user["content"] == "Weather?"
    assert reply["content"] == "Answer 1"
    assert reply["model"] == "gpt-4o-mini" + DATED
    props = reply["properties"]
    assert props["usage"] == SAME_CALL
    assert props["providerUsage"] == CHAT_USAGE  # the API's own, as it came
    assert props["finishReason"] == "stop"
    assert props["latencyMs"] >= 0
    assert props["provider"] == "openai"
    assert props["api"] == "chat"
    assert props["responseId"].startswith("chatcmpl-")
    assert reply["parentExternalMessageId"] == user["externalMessageId"]


def test_parallel_tool_calls_and_observations(gf_client, capture_server):
    client = wrap_openai(make_openai(), external_conversation_id="tools")
    history: list[Any] = [SYSTEM, {"role": "developer", "content": "Be brief."}]
    history.append({"role": "user", "content": "Weather and time in Paris?"})
    first = client.chat.completions.create(
        model="tool-model", messages=history, tools=WEATHER_TOOLS
    )
    assert first.choices[0].finish_reason == "tool_calls"
    history.append(first.choices[0].message)  # the pydantic message, as apps do
    history.append({"role": "tool", "tool_call_id": "call_a", "content": "sunny, 21C"})
    history.append({"role": "tool", "tool_call_id": "call_b", "content": "14:05"})
    client.chat.completions.create(model="tool-model", messages=history, tools=WEATHER_TOOLS)
    msgs = delivered(gf_client, capture_server)
    assert kinds(msgs) == [
        "user",
        "tool_call",
        "tool_call",
        "observation",
        "observation",
        "final_response",
    ]
    assert capture_server.requests[0]["systemPrompt"] == "You are a weather bot.\n\nBe brief."
    user, call_a, call_b, obs_a, obs_b, final = msgs
    assert call_a["toolName"] == "get_weather"
    assert call_a["input"] == {"city": "Paris"}
    # unparseable arguments are kept verbatim, with a marker
    assert call_b["toolName"] == "get_time"
    assert call_b["input"] == {"arguments": '{"tz": "CET"', "invalidJson": True}
    assert call_a["parentExternalMessageId"] == user["externalMessageId"]
    assert obs_a["parentExternalMessageId"] == call_a["externalMessageId"]
    assert obs_b["parentExternalMessageId"] == call_b["externalMessageId"]
    assert obs_a["output"] == {"result": "sunny, 21C"}
    assert obs_a["toolName"] == "get_weather"
    assert final["content"] == "Answer 1"
    assert final["model"] == "tool-model" + DATED
    assert call_a["properties"]["finishReason"] == "tool_calls"


def test_refusal_is_recorded(gf_client, capture_server):
    client = wrap_openai(make_openai())
    client.chat.completions.create(
        model="refuse-model", messages=[{"role": "user", "content": "something bad"}]
    )
    msgs = delivered(gf_client, capture_server)
    assert msgs[-1]["content"] == "I can't help with that."
    assert msgs[-1]["properties"]["refusal"] is True


def test_stateless_growing_history_is_one_conversation_each_message_once(gf_client, capture_server):
    client = wrap_openai(make_openai())  # no conversation id anywhere
    history: list[Any] = [SYSTEM]
    for turn in range(1, 5):
        history.append({"role": "user", "content": f"question {turn}"})
        r = client.chat.completions.create(model="gpt-4o-mini", messages=list(history))
        history.append({"role": "assistant", "content": r.choices[0].message.content})
    # another user with the same opening lands in another conversation
    client.chat.completions.create(model="gpt-4o-mini", messages=history[:2], user="someone-else")
    msgs = delivered(gf_client, capture_server)
    convs = {r["externalConversationId"] for r in capture_server.requests}
    assert len(convs) == 2
    mine = [
        m
        for r in capture_server.requests
        if r["externalUserId"] == "anonymous"
        for m in r["messages"]
    ]
    assert [m["content"] for m in mine] == [
        "question 1",
        "Answer 1",
        "question 2",
        "Answer 2",
        "question 3",
        "Answer 3",
        "question 4",
        "Answer 4",
    ]
    assert len({m["externalMessageId"] for m in msgs}) == len(msgs)
    prompts = [r for r in capture_server.requests if r.get("systemPrompt")]
    assert len(prompts) == 2  # once per conversation
    # the derived id is stable: a fresh client in a "new process" derives the same one
    again = wrap_openai(make_openai())
    again.chat.completions.create(model="gpt-4o-mini", messages=history[:2])
    delivered(gf_client, capture_server)
    assert capture_server.requests[-1]["externalConversationId"] in convs


def test_a_caller_mutating_its_list_after_the_call_does_not_leak(gf_client, capture_server):
    client = wrap_openai(make_openai(), external_conversation_id="mut")
    history: list[Any] = [{"role": "user", "content": "q1"}]
    r = client.chat.completions.create(model="gpt-4o-mini", messages=history)
    history.append(r.choices[0].message)
    history.append({"role": "user", "content": "appended later, never sent"})
    msgs = delivered(gf_client, capture_server)
    assert [m["content"] for m in msgs] == ["q1", "Answer 1"]
    assert msgs[1]["model"] == "gpt-4o-mini" + DATED  # the reply keeps its model


# -- streams -----------------------------------------------------------------------------


def test_chat_stream_with_caller_usage(gf_client, capture_server):
    client = wrap_openai(make_openai(), external_conversation_id="s1")
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].choices == []
    assert chunks[-1].usage.total_tokens == 18
    msgs = delivered(gf_client, capture_server)
    assert kinds(msgs) == ["user", "assistant"]
    reply = msgs[1]
    assert reply["content"] == "Answer 1"
    assert reply["model"] == "gpt-4o-mini" + DATED
    props = reply["properties"]
    assert props["usage"] == SAME_CALL
    assert "usageMissing" not in props
    assert props["stream"] is True
    assert props["finishReason"] == "stop"
    assert "partial" not in props
    assert props["timeToFirstTokenMs"] >= 0


def test_stream_usage_never_changes_the_request(gf_client, capture_server, monkeypatch):
    # stream_usage is deprecated: it warns once and the request goes out as the caller wrote it
    monkeypatch.setattr(gf_openai, "_warned_stream_usage", False)
    api = MockAPI()
    with pytest.warns(DeprecationWarning, match="stream_usage"):
        client = wrap_openai(make_openai(api), stream_usage=True, external_conversation_id="s2")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wrap_openai(make_openai(api), stream_usage=True)  # once only
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    texts = [chunk.choices[0].delta.content for chunk in stream]
    assert "".join(t or "" for t in texts) == "Answer 1"
    assert "stream_options" not in api.bodies[-1]
    # the SDK's own accumulator
    again = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Answer 1"},
        {"role": "user", "content": "again"},
    ]
    with chat_helper(client, "stream")(model="gpt-4o-mini", messages=again) as s:
        final = s.get_final_completion()
    assert final.choices[0].message.content == "Answer 2"
    assert "stream_options" not in api.bodies[-1]
    msgs = delivered(gf_client, capture_server)
    replies = [m for m in msgs if m.get("role") == "assistant"]
    assert len(replies) == 2
    # the API sent no usage: said so, nothing made up
    for m in replies:
        assert "usage" not in m["properties"]
        assert m["properties"]["usageMissing"] is True


def test_stream_closed_early_is_recorded_once_as_partial(gf_client, capture_server):
    client = wrap_openai(make_openai(), external_conversation_id="early")
    with client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    ) as stream:
        for chunk in stream:
            if chunk.choices[0].delta.content:
                break  # first text chunk: "Ans"
    stream.close()  # closing again is harmless
    # the manager closes through ChatCompletionStream.close (the HTTP response)
    with chat_helper(client, "stream")(
        model="gpt-4o-mini",
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "x"},
            {"role": "user", "content": "more"},
        ],
    ) as managed:
        for event in managed:
            if event.type == "content.delta" and event.delta:
                break
    msgs = delivered(gf_client, capture_server)
    replies = [m for m in msgs if m.get("role") == "assistant" and m["content"] != "x"]
    assert [m["content"] for m in replies] == ["Ans", "Ans"]
    for m in replies:
        assert m["properties"]["partial"] is True
        assert m["properties"]["streamEnd"] == "closed"


def test_stream_manager_is_logged_once(gf_client, capture_server):
    api = MockAPI()
    client = wrap_openai(make_openai(api), external_conversation_id="mgr")
    with chat_helper(client, "stream")(
        model="tool-model", messages=[{"role": "user", "content": "Paris?"}], tools=WEATHER_TOOLS
    ) as stream:
        events = [e.type for e in stream]
        final = stream.get_final_completion()
    assert "tool_calls.function.arguments.done" in events
    assert final.choices[0].message.tool_calls[0].function.name == "get_weather"
    msgs = delivered(gf_client, capture_server)
    assert len(api.bodies) == 1
    assert kinds(msgs) == ["user", "tool_call", "tool_call"]
    assert msgs[1]["input"] == {"city": "Paris"}
    assert msgs[1]["properties"]["stream"] is True


def test_stream_error_midway_is_reraised_and_recorded_partial(gf_client, capture_server):
    def handler(request: httpx.Request) -> httpx.Response:
        base = {"id": "c9", "object": "chat.completion.chunk", "created": 0, "model": "m-1"}
        good = {
            **base,
            "choices": [{"index": 0, "delta": {"content": "Par"}, "finish_reason": None}],
        }
        body = f"data: {json.dumps(good)}\n\n" + 'data: {"error": {"message": "overloaded"}}\n\n'
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    def make() -> OpenAI:
        return OpenAI(
            api_key="t",
            base_url="http://mock/v1",
            http_client=httpx.Client(transport=httpx.MockTransport(handler)),
        )

    def second_item_fault(client: OpenAI) -> tuple[Any, BaseException]:
        stream = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "q"}], stream=True
        )
        first = next(stream)
        with pytest.raises(Exception) as info:
            next(stream)
        return first, info.value

    _, bare_error = second_item_fault(make())
    first, error = second_item_fault(wrap_openai(make(), external_conversation_id="err-stream"))
    assert type(error) is type(bare_error)
    assert str(error) == str(bare_error)
    assert first.choices[0].delta.content == "Par"
    msgs = delivered(gf_client, capture_server)
    reply = msgs[-1]
    assert reply["content"] == "Par"
    assert reply["properties"]["partial"] is True
    assert reply["properties"]["error"]["message"] == "overloaded"


# -- parse ---------------------------------------------------------------------------------


class Weather(BaseModel):
    city: str
    temp: int


HAS_CHAT_PARSE = hasattr(Completions, "parse")


@pytest.mark.parametrize(
    "where",
    [
        pytest.param(
            "chat",
            marks=pytest.mark.skipif(
                not HAS_CHAT_PARSE, reason="openai < 1.92 has parse only on beta.chat.completions"
            ),
        ),
        "beta.chat",  # older code's spelling; at the floor its only place
    ],
)
def test_chat_parse(where, gf_client, capture_server):
    api = MockAPI()
    client = wrap_openai(make_openai(api), external_conversation_id="parse")
    completions = client.chat.completions if where == "chat" else client.beta.chat.completions
    r = completions.parse(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Weather in Paris as JSON"}],
        response_format=Weather,
    )
    assert r.choices[0].message.parsed == Weather(city="Paris", temp=21)
    # recorded once, also where the SDK's parse posts through chat.completions.create
    # (before openai 1.50): an error is one message per recorded call
    with pytest.raises(openai.BadRequestError):
        completions.parse(
            model="error-model",
            messages=[{"role": "user", "content": "x"}],
            response_format=Weather,
        )
    assert len(api.bodies) == 2
    msgs = delivered(gf_client, capture_server)
    assert kinds(msgs) == ["user", "assistant", "user", "llm"]
    assert json.loads(msgs[1]["content"]) == {"city": "Paris", "temp": 21}
    assert msgs[3]["properties"]["statusCode"] == 400


# -- responses -----------------------------------------------------------------------------


@needs_responses
def test_async_responses_keep_coroutine_functions():
    aclient = wrap_openai(make_async_openai())
    assert inspect.iscoroutinefunction(aclient.responses.create)
    assert inspect.iscoroutinefunction(aclient.responses.parse)


@needs_responses
def test_responses_create_maps_instructions_reasoning_and_reply(gf_client, capture_server):
    client = wrap_openai(make_openai(), external_conversation_id="resp")
    r = client.responses.create(
        model="gpt-4.1",
        instructions="Answer in one line.",
        input=[
            {"role": "developer", "content": "Use metric units."},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Hello"},
                    {"type": "input_image", "image_url": "data:..."},
                ],
            },
        ],
    )
    from openai.types.responses import Response

    assert type(r) is Response  # the SDK's own type, unchanged
    assert r.output_text == "Reply 1"
    msgs = delivered(gf_client, capture_server)
    assert capture_server.requests[0]["systemPrompt"] == "Answer in one line.\n\nUse metric units."
    assert kinds(msgs) == ["user", "thought", "assistant"]
    user, thought, reply = msgs
    assert user["content"] == "Hello\n[image]"
    assert thought["content"] == "The user greets me."
    assert reply["content"] == "Reply 1"
    assert reply["model"] == "gpt-4.1-2025-04-14"
    assert reply["properties"]["usage"] == SAME_CALL
    assert reply["properties"]["finishReason"] == "completed"
    assert reply["properties"]["responseId"] == r.id


@needs_responses
def test_responses_stream_and_manager_logged_once(gf_client, capture_server):
    api = MockAPI()
    client = wrap_openai(make_openai(api))
    with gf.conversation("rs-1"):
        stream = client.responses.create(model="gpt-4.1", input="hi", stream=True)
    assert type(stream) is openai.Stream
    events = [e.type for e in stream]
    assert events[0] == "response.created"
    assert events[-1] == "response.completed"
    with gf.conversation("rs-2"), client.responses.stream(model="gpt-4.1", input="hi") as managed:
        for _ in managed:
            pass
        final = managed.get_final_response()
    assert final.output_text == "Reply 1"
    msgs = delivered(gf_client, capture_server)
    assert len(api.bodies) == 2
    replies = [m for m in msgs if m.get("role") == "assistant"]
    assert len(replies) == 2
    assert all(m["properties"]["usage"] == SAME_CALL for m in replies)
    assert kinds(msgs).count("thought") == 2


@needs_responses
def test_responses_stream_closed_early_is_partial(gf_client, capture_server):
    client = wrap_openai(make_openai(), external_conversation_id="rs-early")
    with client.responses.create(model="gpt-4.1", input="hi", stream=True) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                break
    msgs = delivered(gf_client, capture_server)
    reply = msgs[-1]
    assert reply["content"] == "Rep"
    assert reply["properties"]["partial"] is True
    assert reply["model"] == "gpt-4.1-2025-04-14"


@needs_responses
def test_responses_parse(gf_client, capture_server):
    client = wrap_openai(make_openai(), external_conversation_id="rparse")
    r = client.responses.parse(model="gpt-4.1", input="Oslo weather", text_format=Weather)
    assert r.output_parsed == Weather(city="Oslo", temp=3)
    msgs = delivered(gf_client, capture_server)
    assert json.loads(msgs[-1]["content"]) == {"city": "Oslo", "temp": 3}


@needs_responses
def test_responses_chains_stay_in_one_conversation(gf_client, capture_server):
    client = wrap_openai(make_openai())
    r1 = client.responses.create(model="gpt-4.1", input="hi")
    r2 = client.responses.create(model="gpt-4.1", input="hi", previous_response_id=r1.id)
    client.responses.create(model="gpt-4.1", input="hi", previous_response_id=r2.id)
    client.responses.create(model="gpt-4.1", input="hello", conversation="conv_abc")
    client.responses.create(model="gpt-4.1", input="hello", conversation={"id": "conv_abc"})
    msgs = delivered(gf_client, capture_server)
    by_conv: dict[str, list[str]] = {}
    for req in capture_server.requests:
        by_conv.setdefault(req["externalConversationId"], []).extend(
            m.get("content") for m in req["messages"] if m.get("role")
        )
    assert len(by_conv) == 2
    # the same words repeated in a chain are separate messages (native ids per response)
    chain = next(v for k, v in by_conv.items() if k != "conv_abc")
    assert chain == ["hi", "Reply 1"] * 3
    assert by_conv["conv_abc"] == ["hello", "Reply 1"] * 2
    assert len({m["externalMessageId"] for m in msgs}) == len(msgs)


@needs_responses
def test_responses_stateless_tool_loop(gf_client, capture_server):
    client = wrap_openai(make_openai(), external_user_id="u-r")
    items: list[Any] = [{"role": "user", "content": "Weather in Oslo?"}]
    r1 = client.responses.create(model="tool-model", input=items, instructions="Be brief.")
    items += r1.output  # pydantic output items resent as input
    call = next(i for i in r1.output if i.type == "function_call")
    items.append({"type": "function_call_output", "call_id": call.call_id, "output": "-3C"})
    r2 = client.responses.create(model="tool-model", input=items, instructions="Be brief.")
    assert r2.output_text == "Reply 1"
    msgs = delivered(gf_client, capture_server)
    assert len({r["externalConversationId"] for r in capture_server.requests}) == 1
    assert kinds(msgs) == [
        "user",
        "thought",
        "tool_call",
        "observation",
        "thought",
        "final_response",
    ]
    tool_call, obs = msgs[2], msgs[3]
    assert tool_call["toolName"] == "get_weather"
    assert tool_call["input"] == {"city": "Oslo"}
    assert obs["parentExternalMessageId"] == tool_call["externalMessageId"]
    assert obs["toolName"] == "get_weather"


# -- embeddings ------------------------------------------------------------------------------


def test_embeddings_counts_and_dimensions_never_vectors(gf_client, capture_server):
    api = MockAPI()
    client = wrap_openai(make_openai(api), external_conversation_id="emb")
    # the SDK's default: base64 on the wire, decoded for the caller (before openai 1.62,
    # only with numpy installed; floats on the wire otherwise): the caller gets floats
    r = client.embeddings.create(model="text-embedding-3-small", input=["a", "b", "c"])
    assert len(r.data) == 3
    assert len(r.data[0].embedding) == 8
    r2 = client.embeddings.create(
        model="text-embedding-3-small", input="d", dimensions=4, encoding_format="base64"
    )
    assert isinstance(r2.data[0].embedding, str)  # what the caller asked for
    msgs = delivered(gf_client, capture_server)
    assert kinds(msgs) == ["embedding", "embedding"]
    first, second = msgs
    assert first["output"] == {"count": 3, "dimensions": 8}
    assert second["output"] == {"count": 1, "dimensions": 4}
    assert first["model"] == "text-embedding-3-small"
    assert first["properties"]["usage"] == {"inputTokens": 12, "totalTokens": 12}
    wire = json.dumps(capture_server.requests)
    assert "0.26" not in wire
    assert r2.data[0].embedding not in wire


# -- passthrough and errors --------------------------------------------------------------------


def test_raw_response_calls_logged_when_parsed(gf_client, capture_server):
    api = MockAPI()
    client = wrap_openai(make_openai(api), external_conversation_id="raw")
    msgs = [{"role": "user", "content": "hi"}]
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=msgs)
    assert raw.headers["content-type"].startswith("application/json")
    parsed = raw.parse()
    assert parsed.choices[0].message.content == "Answer 1"
    assert raw.parse() is parsed  # the SDK's cached object; recorded once
    # read as lines, never parsed: passed through unlogged, the request as written
    unparsed = [{"role": "user", "content": "unparsed"}]
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=unparsed, stream=True
    ) as resp:
        lines = [line for line in resp.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert "stream_options" not in api.bodies[-1]
    client.with_raw_response.embeddings.create(model="text-embedding-3-small", input="x")
    assert len(api.bodies) == 3
    got = delivered(gf_client, capture_server)
    assert [(kinds([m])[0], m["content"]) for m in got] == [
        ("user", "hi"),
        ("assistant", "Answer 1"),
    ]


@needs_responses
def test_raw_streaming_responses_call_logged_when_parsed(gf_client, capture_server):
    api = MockAPI()
    client = wrap_openai(make_openai(api), external_conversation_id="raw-r")
    # parsed into the SDK's stream (the OpenAI Agents SDK's way): tapped like any stream
    with client.responses.with_streaming_response.create(
        model="gpt-4.1", input="hello", stream=True
    ) as resp:
        events = [e.type for e in resp.parse()]
    assert events[-1] == "response.completed"
    got = delivered(gf_client, capture_server)
    assert [(kinds([m])[0], m["content"]) for m in got] == [
        ("user", "hello"),
        ("thought", "The user greets me."),
        ("assistant", "Reply 1"),
    ]
    assert got[2]["properties"]["stream"] is True
    assert got[2]["model"] == "gpt-4.1-2025-04-14"


def test_api_error_is_reraised_unchanged_and_recorded(gf_client, capture_server):
    bare = make_openai()
    with pytest.raises(openai.BadRequestError) as bare_info:
        bare.chat.completions.create(
            model="error-model", messages=[{"role": "user", "content": "x"}]
        )
    client = wrap_openai(make_openai(), external_conversation_id="err")
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="error-model", messages=[{"role": "user", "content": "x"}]
        )
    assert type(info.value) is type(bare_info.value)
    assert str(info.value) == str(bare_info.value)
    assert info.value.status_code == 400
    msgs = delivered(gf_client, capture_server)
    assert kinds(msgs) == ["user", "llm"]
    err = msgs[1]
    assert err["content"].startswith("BadRequestError: ")
    assert err["properties"]["error"]["type"] == "BadRequestError"
    assert err["properties"]["statusCode"] == 400
    assert err["model"] == "error-model"


def test_our_own_failure_never_reaches_the_caller(gf_client, capture_server, monkeypatch, caplog):
    from gf_integrations.openai import endpoints

    def boom(*a: Any, **k: Any) -> None:
        raise RuntimeError("mapper bug")

    monkeypatch.setattr(endpoints.CHAT, "record", boom)
    monkeypatch.setattr(once.process, "_keys", set())
    client = wrap_openai(make_openai(), external_conversation_id="bug")
    with caplog.at_level(logging.WARNING, logger="gf_integrations"):
        for _ in range(3):
            r = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
            )
            assert r.choices[0].message.content == "Answer 1"
    warnings = [r for r in caplog.records if "wrapper failed" in r.getMessage()]
    assert len(warnings) == 1
    # the exception's type, never its text (it may quote the host's data)
    assert "RuntimeError" in warnings[0].getMessage()
    assert "mapper bug" not in caplog.text  # logged once


# -- identity ------------------------------------------------------------------------------


def test_identity_precedence(gf_client, capture_server):
    plain = wrap_openai(make_openai())
    msgs = [{"role": "user", "content": "hi"}]
    plain.chat.completions.create(model="gpt-4o-mini", messages=msgs, user="req-user")
    with gf.conversation(
        "scoped-conv", external_user_id="scope-user", external_organization_id="org"
    ):
        plain.chat.completions.create(model="gpt-4o-mini", messages=msgs, user="req-user")
    pinned = wrap_openai(make_openai(), external_user_id="wrap-user", external_conversation_id="c")
    with gf.conversation("scoped-conv-2", external_user_id="scope-user"):
        pinned.chat.completions.create(model="gpt-4o-mini", messages=msgs, user="req-user")
    delivered(gf_client, capture_server)
    got = sorted(  # three conversations, sent concurrently: put them in call order
        (
            (r["externalUserId"], r["externalConversationId"], r.get("externalOrganizationId"))
            for r in capture_server.requests
        ),
        key=lambda g: ["req-user", "scope-user", "wrap-user"].index(g[0]),
    )
    assert got[0][0] == "req-user"
    assert got[0][1].startswith("openai-")
    assert got[1] == ("scope-user", "scoped-conv", "org")
    assert got[2] == ("wrap-user", "c", None)


@pytest.mark.skipif(
    not HAS_SAFETY_IDENTIFIER, reason="openai < 1.98 has no safety_identifier parameter"
)
def test_safety_identifier_is_the_native_user(gf_client, capture_server):
    plain = wrap_openai(make_openai())
    msgs = [{"role": "user", "content": "hi"}]
    plain.chat.completions.create(model="gpt-4o-mini", messages=msgs, safety_identifier="sid-1")
    # `user` ranks above it
    plain.chat.completions.create(
        model="gpt-4o-mini", messages=msgs, user="req-user", safety_identifier="sid-2"
    )
    delivered(gf_client, capture_server)
    users = sorted(r["externalUserId"] for r in capture_server.requests)
    assert users == ["req-user", "sid-1"]


def test_explicit_client_keyword_and_with_options_copies(make_client, capture_server):
    mine = make_client()
    client = wrap_openai(make_openai(), client=mine, external_conversation_id="kw")
    copy = client.with_options(max_retries=1).with_options(timeout=3)
    copy.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "c"}])
    assert mine.flush(10)
    assert capture_server.wait_for(lambda s: len(s.requests) >= len(s.attempts))
    assert [m["content"] for m in capture_server.messages] == ["c", "Answer 1"]


def test_azure_logs_the_real_model_not_the_deployment(gf_client, capture_server):
    api = MockAPI(azure_model="gpt-4o-2024-08-06")
    raw = AzureOpenAI(
        api_key="k",
        api_version="2024-10-21",
        azure_endpoint="https://example.openai.invalid",
        http_client=httpx.Client(transport=httpx.MockTransport(api)),
    )
    client = wrap_openai(raw, external_conversation_id="az")
    assert client is raw
    assert isinstance(client, AzureOpenAI)
    client.chat.completions.create(
        model="my-deployment", messages=[{"role": "user", "content": "hi"}]
    )
    copy = client.with_options(timeout=2)
    assert isinstance(copy, AzureOpenAI)
    copy.chat.completions.create(
        model="my-deployment",
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Answer 1"},
            {"role": "user", "content": "again"},
        ],
    )
    assert api.paths[0] == "/openai/deployments/my-deployment/chat/completions"
    msgs = delivered(gf_client, capture_server)
    replies = [m for m in msgs if m.get("role") == "assistant"]
    assert [m["model"] for m in replies] == ["gpt-4o-2024-08-06"] * 2
    assert replies[0]["properties"]["provider"] == "azure"
    assert replies[0]["properties"]["deployment"] == "my-deployment"


def test_async_azure_is_wrapped_in_place():
    api = MockAPI(azure_model="gpt-4o-2024-08-06")
    raw = AsyncAzureOpenAI(
        api_key="k",
        api_version="2024-10-21",
        azure_endpoint="https://example.openai.invalid",
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(api)),
    )
    assert wrap_openai(raw) is raw
    assert isinstance(raw, AsyncAzureOpenAI)


# -- cross-integration dedup -------------------------------------------------------------------


def test_not_logged_when_an_outer_integration_records_the_call(gf_client, capture_server):
    client = wrap_openai(make_openai(), external_conversation_id="outer")
    active = {"on": False}

    def probe() -> bool:
        return active["on"]

    gf_context.register_capture_probe(probe)
    try:
        active["on"] = True
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "a"}]
        )
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "b"}]
        )
        active["on"] = False
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "c"}]
        )
    finally:
        gf_context._capture_probes.remove(probe)
    msgs = delivered(gf_client, capture_server)
    assert [m["content"] for m in msgs] == ["c", "Answer 1"]


# -- async -------------------------------------------------------------------------------------


async def _async_script(client: AsyncOpenAI) -> None:
    history: list[Any] = [SYSTEM, {"role": "user", "content": "Paris?"}]
    r = await client.chat.completions.create(
        model="tool-model", messages=history, tools=WEATHER_TOOLS
    )
    history.append(r.choices[0].message)
    history.append({"role": "tool", "tool_call_id": "call_a", "content": "sunny"})
    history.append({"role": "tool", "tool_call_id": "call_b", "content": "noon"})
    await client.chat.completions.create(model="tool-model", messages=history)
    stream = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "s"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    async with stream:
        async for _ in stream:
            pass
    async with chat_helper(client, "stream")(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "m"}]
    ) as managed:
        async for _ in managed:
            pass
    await chat_helper(client, "parse")(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "j"}], response_format=Weather
    )
    await client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(
            model="error-model", messages=[{"role": "user", "content": "e"}]
        )


async def _async_responses_script(client: AsyncOpenAI) -> None:
    await client.responses.create(model="gpt-4.1", input="r", instructions="Be brief.")
    rstream = await client.responses.create(model="gpt-4.1", input="rs", stream=True)
    async for _ in rstream:
        pass
    async with client.responses.stream(model="gpt-4.1", input="rm") as rmanaged:
        async for _ in rmanaged:
            pass
    await client.responses.parse(model="gpt-4.1", input="rp", text_format=Weather)


def _sync_script(client: OpenAI) -> None:
    history: list[Any] = [SYSTEM, {"role": "user", "content": "Paris?"}]
    r = client.chat.completions.create(model="tool-model", messages=history, tools=WEATHER_TOOLS)
    history.append(r.choices[0].message)
    history.append({"role": "tool", "tool_call_id": "call_a", "content": "sunny"})
    history.append({"role": "tool", "tool_call_id": "call_b", "content": "noon"})
    client.chat.completions.create(model="tool-model", messages=history)
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "s"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    with stream:
        for _ in stream:
            pass
    with chat_helper(client, "stream")(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "m"}]
    ) as managed:
        for _ in managed:
            pass
    chat_helper(client, "parse")(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "j"}], response_format=Weather
    )
    client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="error-model", messages=[{"role": "user", "content": "e"}]
        )


def _sync_responses_script(client: OpenAI) -> None:
    client.responses.create(model="gpt-4.1", input="r", instructions="Be brief.")
    for _ in client.responses.create(model="gpt-4.1", input="rs", stream=True):
        pass
    with client.responses.stream(model="gpt-4.1", input="rm") as rmanaged:
        for _ in rmanaged:
            pass
    client.responses.parse(model="gpt-4.1", input="rp", text_format=Weather)


_VOLATILE = {"latencyMs", "timeToFirstTokenMs"}


def _normalise(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for req in requests:
        req = json.loads(json.dumps(req))
        for m in req["messages"]:
            m.pop("createdAt", None)
            m.pop("externalMessageId", None)
            m.pop("parentExternalMessageId", None)
            for key in _VOLATILE:
                (m.get("properties") or {}).pop(key, None)
        out.append(req)
    return out


# the scripts (sync, async) and the least each delivers
SCRIPTS: dict[str, tuple[Any, Any, int]] = {
    "chat": (_sync_script, _async_script, 15),
    "responses": (_sync_responses_script, _async_responses_script, 12),
}


@pytest.mark.parametrize("api", ["chat", pytest.param("responses", marks=needs_responses)])
def test_sync_and_async_produce_identical_payloads(api, make_client, capture_server):
    sync_script, async_script, least = SCRIPTS[api]
    sync_gf = make_client()
    sync_script(wrap_openai(make_openai(), client=sync_gf, external_user_id="parity"))
    assert sync_gf.flush(10)
    assert capture_server.wait_for(lambda s: len(s.requests) >= len(s.attempts))
    sync_requests = list(capture_server.requests)
    capture_server.requests.clear()
    async_gf = make_client()
    asyncio.run(
        async_script(wrap_openai(make_async_openai(), client=async_gf, external_user_id="parity"))
    )
    assert async_gf.flush(10)
    assert capture_server.wait_for(
        lambda s: len(s.requests) >= len(s.attempts) - len(sync_requests)
    )
    async_requests = list(capture_server.requests)
    sync_msgs = [m for r in sync_requests for m in r["messages"]]
    async_msgs = [m for r in async_requests for m in r["messages"]]
    assert len(sync_msgs) == len(async_msgs) >= least

    def by_conv(reqs: list[dict[str, Any]], keep_ids: bool) -> dict[str, Any]:
        # batches of different conversations may interleave differently: group them
        grouped: dict[str, Any] = {}
        for r in reqs if keep_ids else _normalise(reqs):
            conv = grouped.setdefault(
                r["externalConversationId"], {"fields": None, "prompts": [], "messages": []}
            )
            conv["fields"] = {k: v for k, v in r.items() if k not in ("messages", "systemPrompt")}
            if "systemPrompt" in r:
                conv["prompts"].append(r["systemPrompt"])
            if keep_ids:
                # embeddings and errors are one per call: their ids come from a call key
                conv["messages"].extend(
                    (m["externalMessageId"], m.get("parentExternalMessageId"))
                    for m in r["messages"]
                    if m.get("messageType") not in ("embedding", "llm")
                )
            else:
                conv["messages"].extend(r["messages"])
        return grouped

    assert by_conv(sync_requests, False) == by_conv(async_requests, False)
    # message ids are deterministic (conversation + position/content): they match too
    sync_ids, async_ids = by_conv(sync_requests, True), by_conv(async_requests, True)
    assert sync_ids == async_ids
    if api == "chat":
        assert "tool_call" in kinds(sync_msgs)
        assert "embedding" in kinds(sync_msgs)
    else:
        assert "thought" in kinds(sync_msgs)


def test_async_types_and_early_close(gf_client, capture_server):
    async def main() -> None:
        client = wrap_openai(make_async_openai())
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert type(stream) is openai.AsyncStream
        async with stream:
            async for chunk in stream:
                assert type(chunk) is ChatCompletionChunk
                if chunk.choices[0].delta.content:
                    break
        with gf.conversation("async-early-2"):
            async with chat_helper(client, "stream")(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
            ) as managed:
                async for event in managed:
                    if event.type == "content.delta" and event.delta:
                        break

    asyncio.run(main())
    msgs = delivered(gf_client, capture_server)
    replies = [m for m in msgs if m.get("role") == "assistant"]
    assert [m["content"] for m in replies] == ["Ans", "Ans"]
    assert all(m["properties"]["partial"] is True for m in replies)


# -- packaging -------------------------------------------------------------------------------


def test_importing_the_package_does_not_import_openai():
    code = "import sys, gf_integrations; print('openai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

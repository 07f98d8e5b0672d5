"""A fake OpenAI API that speaks the real wire formats, scripted by queueing replies.

Endpoints (any prefix, so ``/v1/...`` and Azure's ``/openai/deployments/<d>/...`` both work):

- ``POST .../chat/completions``: plain JSON, or SSE when ``stream`` is true. Streamed text
  arrives in 4-character ``content`` deltas; each tool call arrives as one chunk with its
  ``id``/``name`` and empty ``arguments``, then the arguments in 5-character pieces. With
  ``stream_options.include_usage`` every chunk carries ``usage: null`` and a last chunk with
  ``choices: []`` carries the usage. Azure paths also get ``prompt_filter_results`` (and, when
  streamed, the leading Azure chunk with empty ``choices`` and an empty ``model``).
- ``POST .../responses``: a ``message`` output item and/or ``function_call`` items; streamed
  as the real event sequence (``response.created``, ``response.in_progress``,
  ``response.output_item.added``, ``response.content_part.added``,
  ``response.output_text.delta``..., ``response.function_call_arguments.delta``...,
  ``*.done``, ``response.completed``). ``function_call_output`` inputs are just recorded.
- ``POST .../completions`` (the legacy text completions that ``OpenAILike(is_chat_model=False)``
  uses for local servers): ``text_completion`` JSON, or SSE in 4-character ``text`` pieces,
  with the usage chunk when ``stream_options.include_usage`` asks for it.
- ``POST .../embeddings``: deterministic bag-of-words vectors (texts sharing words are close),
  ``float`` or ``base64`` as asked; does not consume a queued reply.

The answering model is the *resolved* snapshot name (``gpt-4o-mini`` -> ``gpt-4o-mini-2024-07-18``,
see :data:`SNAPSHOTS`; an unknown name is echoed). On Azure the model comes from the deployment
(:attr:`FakeOpenAI.deployments`, default: the deployment name itself).

Usage::

    fake = FakeOpenAI()
    fake.reply_tool_call("get_weather", {"city": "Paris"})   # next chat/responses answer
    fake.reply_text("Sunny in Paris.")                        # the one after that
    client = OpenAI(api_key="sk-test", base_url=fake.base_url, http_client=fake.http_client())
    # or fake.async_http_client(), fake.transport(), or a real port:
    with fake.serve() as base_url: ...                        # base_url ends in /v1
    fake.bodies          # every request body (parsed JSON), in order
    fake.requests        # Recorded(method, path, query, headers, body) for each request

When the queue is empty the answer is ``fake.default_text``. Usage figures are fixed:
:data:`CHAT_USAGE` and :data:`RESPONSES_USAGE`. Tool-call ids are ``call_1``, ``call_2``...
(Responses items ``fc_1``...) unless given.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import struct
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from helpers.loopback import serve

SNAPSHOTS = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
    "gpt-4.1-nano": "gpt-4.1-nano-2025-04-14",
    "gpt-3.5-turbo": "gpt-3.5-turbo-0125",
}
# every reply reports the same call: 11 input tokens (4 read from the prompt cache, 3
# written to it), 7 output tokens (2 of reasoning), each API in its own way
CHAT_USAGE = {
    "prompt_tokens": 11,
    "completion_tokens": 7,
    "total_tokens": 18,
    "prompt_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 3, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 2, "audio_tokens": 0},
}
RESPONSES_USAGE = {
    "input_tokens": 11,
    "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 3},
    "output_tokens": 7,
    "output_tokens_details": {"reasoning_tokens": 2},
    "total_tokens": 18,
}
CREATED = 1764115200
FINGERPRINT = "fp_44709d6fcb"
_FILTERS = {
    k: {"filtered": False, "severity": "safe"} for k in ("hate", "self_harm", "sexual", "violence")
}
_DEPLOYMENT = re.compile(r"/deployments/([^/]+)/")


@dataclass
class ToolCall:
    """One scripted tool call; ``arguments`` is sent as given when a string (may be broken)."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    @property
    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments)


@dataclass
class Reply:
    """One scripted answer: text and/or tool calls, or an HTTP error."""

    text: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    status: int = 200
    error: str | None = None


@dataclass
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


class FakeOpenAI:
    """The fake API; an instance is an ``httpx.MockTransport`` handler (``fake(request)``)."""

    base_url = "http://fake-openai.test/v1"

    def __init__(self, default_text: str = "Done.") -> None:
        self.default_text = default_text
        self.deployments: dict[str, str] = {}
        self.requests: list[Recorded] = []
        self._queue: list[Reply] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    # scripting ---------------------------------------------------------------------------

    def reply(self, reply: Reply) -> FakeOpenAI:
        """Queue ``reply`` as the next chat/responses answer."""
        with self._lock:
            self._queue.append(reply)
        return self

    def reply_text(self, text: str) -> FakeOpenAI:
        return self.reply(Reply(text=text))

    def reply_tool_call(
        self, name: str, arguments: dict[str, Any] | str, *, text: str | None = None
    ) -> FakeOpenAI:
        return self.reply(Reply(text=text, tool_calls=[ToolCall(name, arguments)]))

    def reply_tool_calls(self, *calls: ToolCall, text: str | None = None) -> FakeOpenAI:
        return self.reply(Reply(text=text, tool_calls=list(calls)))

    def reply_error(self, status: int = 400, message: str = "Invalid request") -> FakeOpenAI:
        return self.reply(Reply(status=status, error=message))

    @property
    def bodies(self) -> list[Any]:
        with self._lock:
            return [r.body for r in self.requests]

    def bodies_for(self, suffix: str) -> list[Any]:
        """Bodies of the requests whose path ends with ``suffix`` (e.g. ``"/embeddings"``)."""
        with self._lock:
            return [r.body for r in self.requests if r.path.endswith(suffix)]

    # clients -----------------------------------------------------------------------------

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def http_client(self) -> httpx.Client:
        return httpx.Client(transport=self.transport())

    def async_http_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self.transport())

    @contextmanager
    def serve(self) -> Iterator[str]:
        """Answer on a loopback port for the ``with`` block; yields ``http://127.0.0.1:N/v1``."""
        with serve(self) as base:
            yield base + "/v1"

    # dispatch ----------------------------------------------------------------------------

    def __call__(self, request: httpx.Request) -> httpx.Response:
        raw = request.read()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        path = request.url.path
        with self._lock:
            self.requests.append(
                Recorded(
                    request.method,
                    path,
                    dict(request.url.params),
                    dict(request.headers),
                    body,
                )
            )
        if path.endswith("/embeddings"):
            return self._embeddings(body)
        if not (path.endswith("/completions") or path.endswith("/responses")):
            return _error(404, f"fake-openai: no route for {path}", "not_found")
        with self._lock:
            reply = self._queue.pop(0) if self._queue else Reply(text=self.default_text)
            for call in reply.tool_calls:
                call.id = call.id or f"call_{next(self._ids)}"
        if reply.error is not None:
            return _error(reply.status, reply.error, "invalid_request_error")
        deployment = _DEPLOYMENT.search(path)
        requested = str(body.get("model") or "")
        if deployment:
            requested = self.deployments.get(deployment.group(1), deployment.group(1))
        model = SNAPSHOTS.get(requested, requested)
        if path.endswith("/chat/completions"):
            return self._chat(body, reply, model, azure=bool(deployment))
        if path.endswith("/completions"):
            return self._completions(body, reply, model)
        return self._responses(body, reply, model)

    # chat completions --------------------------------------------------------------------

    def _chat(self, body: dict[str, Any], reply: Reply, model: str, azure: bool) -> httpx.Response:
        n = len(self.requests)
        base: dict[str, Any] = {
            "id": f"chatcmpl-fake{n}",
            "created": CREATED,
            "model": model,
            "system_fingerprint": FINGERPRINT,
        }
        if not azure:
            base["service_tier"] = "default"
        finish = "tool_calls" if reply.tool_calls else "stop"
        if not body.get("stream"):
            message: dict[str, Any] = {
                "role": "assistant",
                "content": reply.text,
                "refusal": None,
                "annotations": [],
            }
            if reply.tool_calls:
                message["tool_calls"] = [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments_json},
                    }
                    for c in reply.tool_calls
                ]
            choice: dict[str, Any] = {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish,
            }
            payload = {
                **base,
                "object": "chat.completion",
                "choices": [choice],
                "usage": CHAT_USAGE,
            }
            if azure:
                choice["content_filter_results"] = _FILTERS
                payload["prompt_filter_results"] = [
                    {"prompt_index": 0, "content_filter_results": _FILTERS}
                ]
            return httpx.Response(200, json=payload)

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        base["object"] = "chat.completion.chunk"
        if include_usage:
            base["usage"] = None

        def chunk(delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
            return {**base, "choices": [choice]}

        chunks: list[dict[str, Any]] = []
        if azure:
            chunks.append(
                {
                    "choices": [],
                    "created": 0,
                    "id": "",
                    "model": "",
                    "object": "",
                    "prompt_filter_results": [
                        {"prompt_index": 0, "content_filter_results": _FILTERS}
                    ],
                }
            )
        chunks.append(chunk({"role": "assistant", "content": "", "refusal": None}))
        for piece in _pieces(reply.text or "", 4):
            chunks.append(chunk({"content": piece}))
        for i, call in enumerate(reply.tool_calls):
            head = {
                "index": i,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            chunks.append(chunk({"tool_calls": [head]}))
            for piece in _pieces(call.arguments_json, 5):
                chunks.append(
                    chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
                )
        chunks.append(chunk({}, finish))
        if include_usage:
            chunks.append({**base, "choices": [], "usage": CHAT_USAGE})
        text = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        return _sse(text)

    # legacy text completions -------------------------------------------------------------

    def _completions(self, body: dict[str, Any], reply: Reply, model: str) -> httpx.Response:
        n = len(self.requests)
        base: dict[str, Any] = {
            "id": f"cmpl-fake{n}",
            "object": "text_completion",
            "created": CREATED,
            "model": model,
        }
        usage = {k: CHAT_USAGE[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}

        def choice(text: str, reason: str | None) -> dict[str, Any]:
            return {"text": text, "index": 0, "logprobs": None, "finish_reason": reason}

        if not body.get("stream"):
            payload = {**base, "choices": [choice(reply.text or "", "stop")], "usage": usage}
            return httpx.Response(200, json=payload)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        chunks = [{**base, "choices": [choice(p, None)]} for p in _pieces(reply.text or "", 4)]
        chunks.append({**base, "choices": [choice("", "stop")]})
        if include_usage:
            chunks.append({**base, "choices": [], "usage": usage})
        text = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        return _sse(text)

    # responses ---------------------------------------------------------------------------

    def _responses(self, body: dict[str, Any], reply: Reply, model: str) -> httpx.Response:
        n = len(self.requests)
        output: list[dict[str, Any]] = []
        if reply.text is not None:
            output.append(
                {
                    "type": "message",
                    "id": f"msg_fake{n}",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": reply.text, "annotations": []}],
                }
            )
        for call in reply.tool_calls:
            assert call.id is not None
            output.append(
                {
                    "type": "function_call",
                    "id": "fc_" + call.id.removeprefix("call_"),
                    "call_id": call.id,
                    "name": call.name,
                    "arguments": call.arguments_json,
                    "status": "completed",
                }
            )
        response: dict[str, Any] = {
            "id": f"resp_fake{n}",
            "object": "response",
            "created_at": CREATED,
            "status": "completed",
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "metadata": {},
            "model": model,
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": body.get("previous_response_id"),
            "temperature": 1.0,
            "tool_choice": "auto",
            "tools": body.get("tools") or [],
            "top_p": 1.0,
            "text": {"format": {"type": "text"}},
            "usage": RESPONSES_USAGE,
        }
        if not body.get("stream"):
            return httpx.Response(200, json=response)

        seq = itertools.count()
        events: list[dict[str, Any]] = []

        def emit(kind: str, **fields: Any) -> None:
            events.append({"type": kind, "sequence_number": next(seq), **fields})

        pending = {**response, "status": "in_progress", "output": [], "usage": None}
        emit("response.created", response=pending)
        emit("response.in_progress", response=pending)
        for idx, item in enumerate(output):
            at = {"item_id": item["id"], "output_index": idx}
            if item["type"] == "message":
                text = item["content"][0]["text"]
                emit(
                    "response.output_item.added",
                    output_index=idx,
                    item={**item, "status": "in_progress", "content": []},
                )
                part = {"type": "output_text", "text": "", "annotations": []}
                emit("response.content_part.added", **at, content_index=0, part=part)
                for piece in _pieces(text, 4):
                    emit(
                        "response.output_text.delta",
                        **at,
                        content_index=0,
                        delta=piece,
                        logprobs=[],
                    )
                emit("response.output_text.done", **at, content_index=0, text=text, logprobs=[])
                emit(
                    "response.content_part.done",
                    **at,
                    content_index=0,
                    part={**part, "text": text},
                )
            else:
                emit(
                    "response.output_item.added",
                    output_index=idx,
                    item={**item, "status": "in_progress", "arguments": ""},
                )
                for piece in _pieces(item["arguments"], 5):
                    emit("response.function_call_arguments.delta", **at, delta=piece)
                emit(
                    "response.function_call_arguments.done",
                    **at,
                    name=item["name"],
                    arguments=item["arguments"],
                )
            emit("response.output_item.done", output_index=idx, item=item)
        emit("response.completed", response=response)
        text = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
        return _sse(text)

    # embeddings --------------------------------------------------------------------------

    def _embeddings(self, body: dict[str, Any]) -> httpx.Response:
        raw = body.get("input")
        inputs = raw if isinstance(raw, list) else [raw]
        dims = int(body.get("dimensions") or 64)
        data = []
        for i, item in enumerate(inputs):
            vector = embed(item if isinstance(item, str) else json.dumps(item), dims)
            if body.get("encoding_format") == "base64":
                packed = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
                data.append({"object": "embedding", "index": i, "embedding": packed})
            else:
                data.append({"object": "embedding", "index": i, "embedding": vector})
        tokens = sum(len(str(x).split()) for x in inputs)
        return httpx.Response(
            200,
            json={
                "object": "list",
                "data": data,
                "model": body.get("model") or "text-embedding-3-small",
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )


def embed(text: str, dims: int = 64) -> list[float]:
    """The fake's embedding of ``text``: unit-length counts of its hashed lower-case words."""
    vector = [0.0] * dims
    for word in re.findall(r"\w+", text.lower()):
        vector[zlib.crc32(word.encode()) % dims] += 1.0
    norm = sum(v * v for v in vector) ** 0.5 or 1.0
    return [v / norm for v in vector]


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _sse(text: str) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=text.encode())


def _error(status: int, message: str, kind: str) -> httpx.Response:
    return httpx.Response(
        status,
        json={"error": {"message": message, "type": kind, "param": None, "code": None}},
    )

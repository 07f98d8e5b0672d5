"""A fake Gemini API speaking the real REST wire format, on a loopback port, for tests.

It answers ``POST .../models/{model}:generateContent`` (JSON) and
``...:streamGenerateContent?alt=sse`` (``data: {...}`` lines, one
``GenerateContentResponse`` per chunk), on the Gemini Developer API paths
(``/v1beta/models/...``, ``/v1/models/...``) and the Vertex AI ones
(``/v1beta1/projects/{p}/locations/{l}/publishers/google/models/...``), the way the API
does: ``candidates[0].content.parts`` (``text``, ``thought``, ``functionCall``, anything
scripted), ``finishReason``, ``usageMetadata``, ``modelVersion``, ``responseId``, and the
error envelope ``{"error": {"code", "message", "status"}}``, also as an SSE chunk
mid-stream.

Usage::

    from helpers.fake_gemini import FakeGemini, text, thought, function_call

    fake = FakeGemini()
    fake.queue(thought("Need the weather."), function_call("get_weather", {"city": "Paris"}))
    fake.queue(text("Sunny, 21 C."))
    fake.queue_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded")
    fake.queue(text("long answer"), stream_error_after=1)   # SSE error chunk after 1 chunk

    with fake.serve() as base_url:
        client = fake.client(base_url)                  # genai.Client on the fake
        vertex = fake.client(base_url, vertex=True)     # Vertex AI, no real credentials

    fake.requests   # JSON bodies received, in order
    fake.paths      # request paths, in order

With an empty queue the fake answers ``text(f"Answer {n}")``, n being the number of user
turns with text in the request. Streams split each text part into 4-character chunks;
usage, ``finishReason`` come on the last chunk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx

from helpers.loopback import serve

DEFAULT_USAGE: dict[str, Any] = {
    "promptTokenCount": 21,
    "candidatesTokenCount": 9,
    "thoughtsTokenCount": 4,
    "totalTokenCount": 34,
}

_ids = itertools.count(1)


def text(value: str) -> dict[str, Any]:
    """A text part."""
    return {"text": value}


def thought(value: str, signature: str = "c2lnbmF0dXJlLXNlY3JldA==") -> dict[str, Any]:
    """A thought summary part (``thought: true``) with its signature."""
    return {"text": value, "thought": True, "thoughtSignature": signature}


def function_call(name: str, args: dict[str, Any], id: str | None = None) -> dict[str, Any]:
    """A ``functionCall`` part (the Gemini API leaves ``id`` out unless given)."""
    call: dict[str, Any] = {"name": name, "args": args}
    if id is not None:
        call["id"] = id
    return {"functionCall": call}


@dataclasses.dataclass
class Reply:
    """One scripted answer (``status`` != 200: the error envelope)."""

    parts: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    finish_reason: str | None = "STOP"
    usage: dict[str, Any] | None = None
    model_version: str | None = None
    status: int = 200
    error_status: str = "INTERNAL"
    error_message: str = "Internal error encountered."
    stream_error_after: int | None = None
    block_reason: str | None = None  # a blocked prompt: no candidates, promptFeedback


class FakeGemini:
    """The fake API: an ``httpx`` handler served on a loopback port."""

    def __init__(self) -> None:
        self._script: list[Reply] = []
        self._requests: list[dict[str, Any]] = []
        self._paths: list[str] = []
        self._lock = threading.Lock()

    def queue(self, *parts: dict[str, Any], **fields: Any) -> Reply:
        """Queue a reply with these parts (keywords: the :class:`Reply` fields)."""
        reply = Reply(parts=list(parts), **fields)
        with self._lock:
            self._script.append(reply)
        return reply

    def queue_error(self, status: int, error_status: str, message: str) -> Reply:
        """Queue an HTTP error (400 INVALID_ARGUMENT, 429 RESOURCE_EXHAUSTED, ...)."""
        return self.queue(status=status, error_status=error_status, error_message=message)

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._requests)

    @property
    def paths(self) -> list[str]:
        with self._lock:
            return list(self._paths)

    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
        """Serve this fake on a loopback port; yields the base URL."""
        with serve(self.handle) as base:
            yield base

    def client(self, base_url: str, *, vertex: bool = False) -> Any:
        """A ``genai.Client`` on this fake (Vertex AI with a fixed token: no real auth)."""
        from google import genai
        from google.genai import types

        options = types.HttpOptions(base_url=base_url)
        if not vertex:
            return genai.Client(api_key="test-key-not-real", http_options=options)
        from google.oauth2.credentials import Credentials

        return genai.Client(
            vertexai=True,
            project="fake-project",
            location="us-central1",
            credentials=Credentials(token="fake-token"),
            http_options=options,
        )

    # -- answering ---------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        raw = request.read()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        path = request.url.path
        with self._lock:
            self._requests.append(body)
            self._paths.append(path)
        _, _, tail = path.rpartition("/models/")
        model, _, method = tail.partition(":")
        if request.method != "POST" or method not in ("generateContent", "streamGenerateContent"):
            return _error(404, "NOT_FOUND", f"no route {request.method} {path}")
        with self._lock:
            reply = self._script.pop(0) if self._script else None
        if reply is None:
            reply = Reply([text(_answer(body))])
        if reply.status != 200:
            return _error(reply.status, reply.error_status, reply.error_message)
        version = reply.model_version or f"{model}-001"
        rid = f"resp-{next(_ids):05d}"
        if method == "generateContent":
            return httpx.Response(200, json=_response(reply, reply.parts, version, rid, True))
        chunks = _chunks(reply)
        lines = []
        for n, parts in enumerate(chunks):
            if reply.stream_error_after is not None and n == reply.stream_error_after:
                err = {"error": {"code": 500, "message": "stream broke", "status": "INTERNAL"}}
                lines.append(_sse(err))
                break
            lines.append(_sse(_response(reply, parts, version, rid, n == len(chunks) - 1)))
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=b"".join(lines)
        )


def _error(status: int, kind: str, message: str) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"code": status, "message": message, "status": kind}}
    )


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\r\n\r\n"


def _answer(body: dict[str, Any]) -> str:
    turns = sum(
        1
        for c in body.get("contents") or ()
        if c.get("role", "user") == "user" and any("text" in p for p in c.get("parts") or ())
    )
    return f"Answer {turns}"


def _response(
    reply: Reply, parts: list[dict[str, Any]], version: str, rid: str, last: bool
) -> dict[str, Any]:
    out: dict[str, Any] = {"modelVersion": version, "responseId": rid}
    if reply.block_reason:
        out["promptFeedback"] = {"blockReason": reply.block_reason}
        out["usageMetadata"] = {"promptTokenCount": 5, "totalTokenCount": 5}
        return out
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if last and reply.finish_reason:
        candidate["finishReason"] = reply.finish_reason
    out["candidates"] = [candidate]
    if last:
        out["usageMetadata"] = {**DEFAULT_USAGE, **(reply.usage or {})}
    return out


def _chunks(reply: Reply) -> list[list[dict[str, Any]]]:
    """The reply's parts as the API streams them: text in 4-character pieces, the rest
    whole; one part per chunk."""
    out: list[list[dict[str, Any]]] = []
    for part in reply.parts:
        value = part.get("text")
        if isinstance(value, str) and value:
            pieces = [value[i : i + 4] for i in range(0, len(value), 4)]
            for n, piece in enumerate(pieces):
                chunk = {**part, "text": piece}
                if n != len(pieces) - 1:
                    chunk.pop("thoughtSignature", None)
                out.append([chunk])
        else:
            out.append([part])
    return out or [[]]

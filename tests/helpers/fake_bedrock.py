"""A fake Amazon Bedrock Runtime speaking the real wire formats, on a loopback port.

It answers what a boto3 ``bedrock-runtime`` client sends:

* ``POST /model/{modelId}/converse``: Converse JSON (``output.message``, ``stopReason``,
  ``usage``, ``metrics``);
* ``POST /model/{modelId}/converse-stream``: the same reply as an
  ``application/vnd.amazon.eventstream`` body: ``messageStart``, ``contentBlockStart``
  (tool use only, as Bedrock does), ``contentBlockDelta`` (text, tool input JSON in pieces,
  reasoning), ``contentBlockStop``, ``messageStop``, ``metadata``;
* ``POST /model/{modelId}/invoke``: a queued body, as bytes;
* ``POST /model/{modelId}/invoke-with-response-stream``: queued chunks, each a ``chunk``
  event whose payload is ``{"bytes": <base64>}``.

Errors are HTTP errors with the AWS error envelope (``x-amzn-ErrorType`` header and a
``message``), exception events inside a stream (``:message-type: exception``), or a body cut
short of its ``content-length``. Every response carries an ``x-amzn-RequestId``.

The event-stream framing is encoded here from the format's definition: a prelude (total
length, headers length: big-endian uint32 each) and its CRC32, the headers (name length:
uint8, name, value type 7 = string, value length: uint16, value), the payload, and the CRC32
of everything before it.

Usage::

    fake = FakeBedrock()
    fake.queue(text("Let me check."), tool_use("get_weather", {"city": "Paris"}, "t1"))
    fake.queue(text("Sunny."), stop="end_turn")
    fake.queue_error(400, "ValidationException", "bad input")
    fake.queue_invoke({"generation": "hi", ...})           # an invoke body (dict or bytes)
    fake.queue_invoke(chunks=[{...}, {...}])               # invoke-with-response-stream
    with fake.serve() as base_url:
        client = bedrock_client(base_url)
"""

from __future__ import annotations

import base64
import collections
import contextlib
import dataclasses
import json
import re
import struct
import threading
import uuid
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

DEFAULT_USAGE: dict[str, Any] = {
    "inputTokens": 21,
    "outputTokens": 9,
    "totalTokens": 30,
    "cacheReadInputTokens": 5,
    "cacheWriteInputTokens": 3,
}

_ROUTE = re.compile(
    r"^/model/(?P<model>[^/]+)/(?P<op>converse|converse-stream|invoke|invoke-with-response-stream)$"
)


def text(value: str) -> dict[str, Any]:
    """A ``text`` content block."""
    return {"text": value}


def tool_use(name: str, input: dict[str, Any], id: str) -> dict[str, Any]:
    """A ``toolUse`` content block."""
    return {"toolUse": {"toolUseId": id, "name": name, "input": input}}


def reasoning(value: str) -> dict[str, Any]:
    """A ``reasoningContent`` block with its signature."""
    return {"reasoningContent": {"reasoningText": {"text": value, "signature": "c2ln"}}}


# -- the event-stream framing -------------------------------------------------------------


def _header(name: str, value: str) -> bytes:
    n, v = name.encode(), value.encode()
    return struct.pack("!B", len(n)) + n + b"\x07" + struct.pack("!H", len(v)) + v


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude, prelude CRC, headers, payload, message CRC."""
    head = b"".join(_header(k, v) for k, v in headers.items())
    prelude = struct.pack("!II", 12 + len(head) + len(payload) + 4, len(head))
    prelude += struct.pack("!I", zlib.crc32(prelude))
    message = prelude + head + payload
    return message + struct.pack("!I", zlib.crc32(message))


def event(kind: str, payload: dict[str, Any]) -> bytes:
    return encode_message(
        {":event-type": kind, ":content-type": "application/json", ":message-type": "event"},
        json.dumps(payload).encode(),
    )


def exception(kind: str, message: str) -> bytes:
    return encode_message(
        {
            ":exception-type": kind,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        json.dumps({"message": message}).encode(),
    )


# -- replies ------------------------------------------------------------------------------


@dataclasses.dataclass
class Reply:
    """A Converse reply (``content`` blocks), or an invoke body / invoke chunks."""

    content: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    stop: str = "end_turn"
    usage: dict[str, Any] | None = None
    body: bytes | None = None
    chunks: list[bytes] | None = None
    # an HTTP error instead of an answer
    error: tuple[int, str, str] | None = None
    # an exception event after this many events of a stream
    stream_error: tuple[str, str] | None = None
    error_after: int = 0
    # a body cut short of its declared content-length
    truncate: bool = False


def _pieces(value: str) -> list[str]:
    half = max(1, len(value) // 2)
    return [value[:half], value[half:]] if len(value) > 1 else [value]


def converse_events(reply: Reply) -> list[bytes]:
    """A Converse reply as the stream Bedrock sends for it."""
    out = [event("messageStart", {"role": "assistant"})]
    for i, block in enumerate(reply.content):
        if "toolUse" in block:
            use = block["toolUse"]
            start = {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}
            out.append(event("contentBlockStart", {"start": start, "contentBlockIndex": i}))
            for piece in _pieces(json.dumps(use["input"])):
                delta = {"toolUse": {"input": piece}}
                out.append(event("contentBlockDelta", {"delta": delta, "contentBlockIndex": i}))
        elif "reasoningContent" in block:
            r = block["reasoningContent"]["reasoningText"]
            for piece in _pieces(r["text"]):
                delta = {"reasoningContent": {"text": piece}}
                out.append(event("contentBlockDelta", {"delta": delta, "contentBlockIndex": i}))
            delta = {"reasoningContent": {"signature": r["signature"]}}
            out.append(event("contentBlockDelta", {"delta": delta, "contentBlockIndex": i}))
        else:
            for piece in _pieces(block["text"]):
                delta = {"text": piece}
                out.append(event("contentBlockDelta", {"delta": delta, "contentBlockIndex": i}))
        out.append(event("contentBlockStop", {"contentBlockIndex": i}))
    out.append(event("messageStop", {"stopReason": reply.stop}))
    out.append(
        event("metadata", {"usage": reply.usage or DEFAULT_USAGE, "metrics": {"latencyMs": 12}})
    )
    return out


class FakeBedrock:
    """The fake Bedrock Runtime; replies are taken from the queue in order."""

    def __init__(self) -> None:
        self._queue: collections.deque[Reply] = collections.deque()
        self._lock = threading.Lock()
        self.requests: list[Any] = []  # JSON bodies (or raw bytes when not JSON)
        self.paths: list[str] = []
        self.models: list[str] = []  # model ids, decoded from the path

    def queue(self, *content: dict[str, Any], stop: str = "end_turn", **kw: Any) -> None:
        """A Converse reply of these content blocks."""
        self._queue.append(Reply(list(content), stop, **kw))

    def queue_error(self, status: int, code: str, message: str) -> None:
        self._queue.append(Reply(error=(status, code, message)))

    def queue_invoke(self, body: Any = None, *, chunks: list[Any] | None = None, **kw: Any) -> None:
        """An invoke body (dict: JSON; bytes as they are) or invoke-stream chunks."""
        as_bytes = lambda v: v if isinstance(v, bytes) else json.dumps(v).encode()  # noqa: E731
        self._queue.append(
            Reply(
                body=None if body is None else as_bytes(body),
                chunks=None if chunks is None else [as_bytes(c) for c in chunks],
                **kw,
            )
        )

    def _next(self, request: Any) -> Reply:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        turns = sum(
            1
            for m in (request.get("messages") or [] if isinstance(request, dict) else [])
            if m.get("role") == "user" and any("text" in b for b in m.get("content") or [])
        )
        return Reply([text(f"Answer {turns}")])

    def answer(self, path: str, raw: bytes) -> tuple[int, dict[str, str], bytes, bool]:
        """(status, headers, body, cut short) for one request."""
        try:
            request: Any = json.loads(raw)
        except ValueError:
            request = raw
        with self._lock:
            self.requests.append(request)
            self.paths.append(path)
        match = _ROUTE.match(path.split("?")[0])
        headers = {"x-amzn-RequestId": str(uuid.uuid4())}
        if match is None:
            headers["x-amzn-ErrorType"] = "UnknownOperationException"
            return 404, headers, b'{"message": "unknown route"}', False
        op = match["op"]
        with self._lock:
            self.models.append(unquote(match["model"]))
        reply = self._next(request)
        if reply.error is not None:
            status, code, message = reply.error
            headers["x-amzn-ErrorType"] = f"{code}:http://internal.amazon.com/coral/"
            headers["content-type"] = "application/json"
            return status, headers, json.dumps({"message": message}).encode(), False
        if op == "converse":
            body = {
                "output": {"message": {"role": "assistant", "content": reply.content}},
                "stopReason": reply.stop,
                "usage": reply.usage or DEFAULT_USAGE,
                "metrics": {"latencyMs": 12},
            }
            headers["content-type"] = "application/json"
            return 200, headers, json.dumps(body).encode(), False
        if op == "invoke":
            headers["content-type"] = "application/json"
            return 200, headers, reply.body or b"", reply.truncate
        if op == "converse-stream":
            frames = converse_events(reply)
        else:
            frames = [
                event("chunk", {"bytes": base64.b64encode(c).decode()}) for c in reply.chunks or []
            ]
        if reply.stream_error is not None:
            frames = [*frames[: reply.error_after], exception(*reply.stream_error)]
        headers["content-type"] = "application/vnd.amazon.eventstream"
        return 200, headers, b"".join(frames), reply.truncate

    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
        """Serve on a loopback port for the ``with`` block; yields the base URL."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, headers, body, cut = fake.answer(self.path, raw)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                # cut short: declare more than is sent, then close the connection
                self.send_header("content-length", str(len(body) + (16 if cut else 0)))
                self.end_headers()
                self.wfile.write(body)
                if cut:
                    self.close_connection = True

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        thread.start()
        try:
            yield f"http://127.0.0.1:{httpd.server_address[1]}"
        finally:
            httpd.shutdown()
            httpd.server_close()


def bedrock_client(base_url: str) -> Any:
    """A real boto3 ``bedrock-runtime`` client pointed at ``base_url``: static fake
    credentials, no retries (a retry would sleep), nothing read from the network."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=base_url,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=10),
    )

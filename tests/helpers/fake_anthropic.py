"""A fake Anthropic Messages API speaking the real wire format, for tests.

It answers ``POST /v1/messages`` (plain JSON or SSE when the body has ``"stream": true``),
``POST /v1/messages/count_tokens``, and the Vertex (``...:rawPredict`` /
``...:streamRawPredict``) and Bedrock (``/model/{id}/invoke``, non-streaming only) routes,
the same way the API does: ``text`` / ``tool_use`` / ``thinking`` / ``redacted_thinking``
content blocks, ``stop_reason``, usage with cache read/creation tokens, and streams of
``message_start``, ``ping``, ``content_block_start`` / ``content_block_delta``
(``text_delta``, ``input_json_delta``, ``thinking_delta``, ``signature_delta``) /
``content_block_stop``, ``message_delta`` (stop reason + cumulative usage) and
``message_stop``. Error replies carry the API's error envelope.

Usage::

    from helpers.fake_anthropic import FakeAnthropic, text, tool_use, thinking

    fake = FakeAnthropic()
    fake.queue(thinking("Need the weather."), text("Let me check."),
               tool_use("get_weather", {"city": "Paris"}, id="toolu_1"))
    fake.queue(text("Sunny, 21 C."))             # the answer after the tool_result
    fake.queue_error(529, "overloaded_error", "Overloaded")
    fake.queue(text("cut short"), cut_after=4)   # stream drops after 4 SSE events
    fake.queue(text("x"), stream_error=("overloaded_error", "Overloaded"), error_after=3)

    client = fake.client()           # anthropic.Anthropic over a MockTransport
    aclient = fake.async_client()    # anthropic.AsyncAnthropic, same fake
    transport = fake.transport()     # or build your own: sdk_http.Client(transport=...)

    with fake.serve() as base_url:   # the same fake on a loopback port (real HTTP)
        ChatAnthropic(model="claude-sonnet-4-6", base_url=base_url, api_key="k",
                      max_retries=0)

    fake.requests   # JSON bodies received, in order (thread-safe copies)
    fake.paths      # request paths, in order
    fake.headers    # request headers (lower-case names), in order

Replies are taken from the queue in order, whichever transport asked; the same queued
reply answers a plain or a streamed request (the request decides). With an empty queue
the fake answers ``text(f"Answer {n}")``, n being the number of user turns in the request
(user messages that are not only ``tool_result`` blocks), or calls ``fake.default(body)``
when that is set. The response ``model`` echoes the request's unless the reply names one
or ``FakeAnthropic(resolve={"alias": "dated-id"})`` maps it.

The ``anthropic`` SDK 2.x uses ``httpx2`` (its fork of httpx), older releases ``httpx``:
``http_client=`` must be a ``Client`` / ``AsyncClient`` of the one the installed SDK uses,
and the transport its ``MockTransport``. :data:`sdk_http` is that module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import itertools
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "DEFAULT_USAGE",
    "FakeAnthropic",
    "Reply",
    "redacted_thinking",
    "sdk_http",
    "text",
    "thinking",
    "tool_use",
]

# the same call as fake_openai's: 11 input tokens (input_tokens leaves out the 4 read from
# the cache and the 3 written to it), 7 output tokens (2 of thinking)
DEFAULT_USAGE: dict[str, Any] = {
    "input_tokens": 4,
    "output_tokens": 7,
    "cache_creation_input_tokens": 3,
    "cache_read_input_tokens": 4,
}

_ids = itertools.count(1)


def _sdk_http() -> Any:
    """The HTTP package the installed SDK is built on: ``httpx2`` (2.x) or ``httpx``."""
    import anthropic

    # the SDK's default client subclasses that package's Client
    base = anthropic.DefaultHttpxClient.__mro__[1]
    return importlib.import_module(base.__module__.partition(".")[0])


sdk_http = _sdk_http()


def text(value: str, citations: list[Any] | None = None) -> dict[str, Any]:
    """A ``text`` content block."""
    block: dict[str, Any] = {"type": "text", "text": value}
    if citations is not None:
        block["citations"] = citations
    return block


def tool_use(name: str, input: dict[str, Any], id: str | None = None) -> dict[str, Any]:
    """A ``tool_use`` content block (``id`` defaults to a fresh ``toolu_...``)."""
    return {
        "type": "tool_use",
        "id": id or f"toolu_fake{next(_ids):04d}",
        "name": name,
        "input": input,
    }


def thinking(value: str, signature: str = "c2lnbmF0dXJlLXNlY3JldA==") -> dict[str, Any]:
    """A ``thinking`` content block with its signature."""
    return {"type": "thinking", "thinking": value, "signature": signature}


def redacted_thinking(data: str = "RURBQ1RFRC1CTE9C") -> dict[str, Any]:
    """A ``redacted_thinking`` content block (opaque encrypted data)."""
    return {"type": "redacted_thinking", "data": data}


@dataclasses.dataclass
class Reply:
    """One scripted answer.

    ``status`` != 200 answers with the error envelope (``error_type``, ``error_message``).
    ``cut_after`` drops a streamed answer after that many SSE events (no ``message_stop``);
    ``stream_error`` = (type, message) sends an SSE ``error`` event after ``error_after``
    events, as the API does when it fails mid-stream.
    """

    content: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    stop_reason: str | None = None  # None: "tool_use" if a tool_use block, else "end_turn"
    usage: dict[str, Any] | None = None  # None: DEFAULT_USAGE
    model: str | None = None
    id: str | None = None
    status: int = 200
    error_type: str = "api_error"
    error_message: str = "Internal server error"
    cut_after: int | None = None
    stream_error: tuple[str, str] | None = None
    error_after: int = 2
    stop_sequence: str | None = None


class FakeAnthropic:
    """The fake Messages API: a ``MockTransport`` handler and a loopback server."""

    def __init__(self, resolve: dict[str, str] | None = None) -> None:
        self.resolve = dict(resolve or {})
        self.default: Callable[[dict[str, Any]], Reply] | None = None
        self._script: list[Reply] = []
        self._requests: list[dict[str, Any]] = []
        self._paths: list[str] = []
        self._headers: list[dict[str, str]] = []
        self._lock = threading.Lock()

    # -- scripting ---------------------------------------------------------------------

    def queue(self, *content: dict[str, Any], **fields: Any) -> Reply:
        """Queue a reply with these content blocks (keywords: the :class:`Reply` fields)."""
        reply = Reply(content=list(content), **fields)
        return self.queue_reply(reply)

    def queue_reply(self, reply: Reply) -> Reply:
        """Queue a prepared :class:`Reply`."""
        with self._lock:
            self._script.append(reply)
        return reply

    def queue_error(self, status: int, error_type: str, message: str) -> Reply:
        """Queue an HTTP error (400 ``invalid_request_error``, 529 ``overloaded_error``, ...)."""
        return self.queue_reply(Reply(status=status, error_type=error_type, error_message=message))

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The JSON bodies received so far."""
        with self._lock:
            return list(self._requests)

    @property
    def paths(self) -> list[str]:
        """The request paths received so far."""
        with self._lock:
            return list(self._paths)

    @property
    def headers(self) -> list[dict[str, str]]:
        """The request headers received so far (lower-case names)."""
        with self._lock:
            return list(self._headers)

    # -- clients -----------------------------------------------------------------------

    def transport(self) -> Any:
        """A ``MockTransport`` (of :data:`sdk_http`) answering with this fake (sync and async)."""
        return sdk_http.MockTransport(self.handle)

    def client(self, cls: Any = None, **kwargs: Any) -> Any:
        """An ``anthropic.Anthropic`` (or ``cls``) on this fake; ``max_retries`` defaults to 0."""
        import anthropic

        cls = cls or anthropic.Anthropic
        kwargs.setdefault("max_retries", 0)
        if "api_key" not in kwargs and cls in (anthropic.Anthropic,):
            kwargs["api_key"] = "sk-ant-test-not-a-real-key"
        return cls(http_client=sdk_http.Client(transport=self.transport()), **kwargs)

    def async_client(self, cls: Any = None, **kwargs: Any) -> Any:
        """An ``anthropic.AsyncAnthropic`` (or ``cls``) on this fake."""
        import anthropic

        cls = cls or anthropic.AsyncAnthropic
        kwargs.setdefault("max_retries", 0)
        if "api_key" not in kwargs and cls in (anthropic.AsyncAnthropic,):
            kwargs["api_key"] = "sk-ant-test-not-a-real-key"
        return cls(http_client=sdk_http.AsyncClient(transport=self.transport()), **kwargs)

    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
        """Serve this fake on a loopback port; yields the base URL (``http://127.0.0.1:N``)."""
        server = _LoopbackServer(self)
        try:
            yield server.base_url
        finally:
            server.close()

    # -- answering ---------------------------------------------------------------------

    def handle(self, request: Any) -> Any:
        """The MockTransport handler."""
        status, headers, events, cut = self.answer(
            request.method, request.url.path, dict(request.headers), request.read()
        )
        if events is None:
            return sdk_http.Response(status, headers=headers, content=b"")
        if cut:
            return sdk_http.Response(status, headers=headers, stream=_CutStream(events))
        return sdk_http.Response(status, headers=headers, content=b"".join(events))

    def answer(
        self, method: str, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, dict[str, str], list[bytes] | None, bool]:
        """(status, headers, body pieces, cut) for one request; shared by both transports."""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        with self._lock:
            self._requests.append(body)
            self._paths.append(path)
            self._headers.append({k.lower(): v for k, v in headers.items()})
        if method != "POST":
            return _json(404, _error_body("not_found_error", f"{method} {path}"))
        if path.endswith("/count_tokens") or path.endswith("count-tokens:rawPredict"):
            return _json(200, {"input_tokens": DEFAULT_USAGE["input_tokens"]})
        model = body.get("model")
        stream = bool(body.get("stream"))
        if path.endswith(":streamRawPredict") or path.endswith(":rawPredict"):
            model = model or path.rsplit("/", 1)[-1].split(":", 1)[0]
            stream = stream or path.endswith(":streamRawPredict")
        elif "/model/" in path and path.endswith("/invoke"):
            model = model or path.split("/model/", 1)[1].rsplit("/", 1)[0]
        elif not path.endswith("/v1/messages"):
            return _json(404, _error_body("not_found_error", f"no route {path}"))
        with self._lock:
            reply = self._script.pop(0) if self._script else None
        if reply is None:
            reply = self.default(body) if self.default else Reply([text(_answer(body))])
        if reply.status != 200:
            return _json(reply.status, _error_body(reply.error_type, reply.error_message))
        message = _message(reply, reply.model or self.resolve.get(model, model) or "claude-fake")
        if not stream:
            return _json(200, message)
        events = _sse_events(message, reply)
        cut = reply.cut_after is not None
        if cut:
            events = events[: reply.cut_after]
        return 200, {"content-type": "text/event-stream", "request-id": "req_fake"}, events, cut


# -- wire format ----------------------------------------------------------------------


def _json(status: int, obj: Any) -> tuple[int, dict[str, str], list[bytes], bool]:
    headers = {"content-type": "application/json", "request-id": "req_fake"}
    if status >= 400:
        headers["x-should-retry"] = "false"
    return status, headers, [json.dumps(obj).encode()], False


def _error_body(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_fake"}


def _answer(body: dict[str, Any]) -> str:
    turns = 0
    for m in body.get("messages") or ():
        if m.get("role") != "user":
            continue
        content = m.get("content")
        if (
            isinstance(content, list)
            and content
            and all(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)
        ):
            continue
        turns += 1
    return f"Answer {turns}"


def _message(reply: Reply, model: str) -> dict[str, Any]:
    content = [dict(b) for b in reply.content]
    stop = reply.stop_reason or (
        "tool_use" if any(b.get("type") == "tool_use" for b in content) else "end_turn"
    )
    usage = {
        **DEFAULT_USAGE,
        "cache_creation": {"ephemeral_5m_input_tokens": 3, "ephemeral_1h_input_tokens": 0},
        "output_tokens_details": {"thinking_tokens": 2},
        "server_tool_use": None,
        "service_tier": "standard",
        **(reply.usage or {}),
    }
    return {
        "id": reply.id or f"msg_fake{next(_ids):06d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": reply.stop_sequence,
        "usage": usage,
    }


def _sse(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


def _pieces(value: str, size: int) -> list[str]:
    return [value[i : i + size] for i in range(0, len(value), size)] or [""]


def _sse_events(message: dict[str, Any], reply: Reply) -> list[bytes]:
    usage = message["usage"]
    start_usage = {**usage, "output_tokens": 1}
    out = [
        _sse(
            "message_start",
            {
                "type": "message_start",
                "message": {**message, "content": [], "stop_reason": None, "usage": start_usage},
            },
        ),
        _sse("ping", {"type": "ping"}),
    ]
    for index, block in enumerate(message["content"]):
        kind = block.get("type")
        deltas: list[dict[str, Any]] = []
        if kind == "text":
            start = {"type": "text", "text": ""}
            if "citations" in block:
                start["citations"] = None
            deltas = [{"type": "text_delta", "text": t} for t in _pieces(block["text"], 4)]
        elif kind == "tool_use":
            start = {**block, "input": {}}
            args = json.dumps(block["input"])
            # the API opens with an empty partial_json, then sends the JSON in fragments
            deltas = [{"type": "input_json_delta", "partial_json": ""}]
            deltas += [{"type": "input_json_delta", "partial_json": p} for p in _pieces(args, 6)]
        elif kind == "thinking":
            start = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [
                {"type": "thinking_delta", "thinking": t} for t in _pieces(block["thinking"], 5)
            ]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        else:  # redacted_thinking and anything else arrive whole
            start = block
        out.append(
            _sse(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
        )
        for delta in deltas:
            out.append(
                _sse(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            )
        out.append(_sse("content_block_stop", {"type": "content_block_stop", "index": index}))
    delta_usage = {
        k: usage[k]
        for k in (
            "input_tokens",
            "output_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
            "output_tokens_details",
        )
        if k in usage
    }
    out.append(
        _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": delta_usage,
            },
        )
    )
    out.append(_sse("message_stop", {"type": "message_stop"}))
    if reply.stream_error is not None:
        kind, msg = reply.stream_error
        error = _sse("error", _error_body(kind, msg))
        out = [*out[: reply.error_after], error]
    return out


class _CutStream(sdk_http.SyncByteStream, sdk_http.AsyncByteStream):
    """Sends the given SSE events, then fails as a dropped connection does."""

    def __init__(self, events: list[bytes]) -> None:
        self._events = events

    def __iter__(self) -> Iterator[bytes]:
        yield from self._events
        raise sdk_http.RemoteProtocolError("peer closed connection without sending complete body")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for event in self._events:
            yield event
        raise sdk_http.RemoteProtocolError("peer closed connection without sending complete body")


class _LoopbackServer:
    """The fake on 127.0.0.1: SSE goes out chunk by chunk, a cut stream drops the socket."""

    def __init__(self, fake: FakeAnthropic) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, headers, pieces, cut = fake.answer(
                    self.command, self.path.split("?", 1)[0], dict(self.headers), raw
                )
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                streamed = headers.get("content-type") == "text/event-stream"
                body = b"".join(pieces or ())
                if streamed:
                    self.send_header("transfer-encoding", "chunked")
                else:
                    self.send_header("content-length", str(len(body)))
                self.end_headers()
                if not streamed:
                    self.wfile.write(body)
                    return
                for piece in pieces or ():
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.flush()
                if cut:
                    self.close_connection = True
                    self.connection.shutdown(2)  # no terminating chunk: the client sees a drop
                    return
                self.wfile.write(b"0\r\n\r\n")

            do_POST = _serve
            do_GET = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

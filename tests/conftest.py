"""Shared fixtures: a real loopback HTTP capture server and clients pointed at it.

The capture server is a real HTTP endpoint on 127.0.0.1 (no mocks of our own code). Tests
can script its answers (status, headers, delay) and read every request body it received.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import gf_integrations as gf

# No test may send traffic off this machine: a connection to anything but loopback (or a
# unix socket) fails loudly in this process. Fake providers answer through
# httpx.MockTransport or on a loopback port; the collector and sinks listen on 127.0.0.1.
_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex


def _loopback_only(address: Any) -> None:
    if not isinstance(address, tuple):
        return  # a unix socket path
    host = str(address[0])
    if host.startswith("127.") or host in ("::1", "localhost") or host.startswith("::ffff:127."):
        return
    raise RuntimeError(f"a test tried to connect off this machine: {address!r}")


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _loopback_only(address)
    _connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _loopback_only(address)
    return _connect_ex(self, address)


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]


@dataclass
class Reply:
    """One scripted answer of the capture server."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0
    close: bool = False  # drop the connection without answering


class CaptureServer:
    """A loopback ``POST /api/v1/messages`` endpoint that records what it received."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []  # bodies of answered-2xx requests
        self.attempts: list[dict[str, Any]] = []  # every body received, any answer
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []  # request path of each attempt
        self.script: list[Reply] = []
        # optional: picks the reply from the request body (None: script/default)
        self.responder: Callable[[dict[str, Any]], Reply | None] | None = None
        self.default = Reply()
        self.lock = threading.Lock()
        self.received = threading.Condition(self.lock)
        self.release = threading.Event()  # set to let "hung" replies finish
        self.connections: set[socket.socket] = set()  # open keep-alive connections
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out in two writes: without TCP_NODELAY each answer
            # waits ~40 ms for the client's delayed ACK
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with server.lock:
                    server.connections.add(self.connection)

            def finish(self) -> None:
                with server.lock:
                    server.connections.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"_invalid": raw[:200].decode("utf-8", "replace")}
                chosen = server.responder(body) if server.responder else None
                with server.lock:
                    reply = chosen or (server.script.pop(0) if server.script else server.default)
                    server.attempts.append(body)
                    server.headers.append(dict(self.headers))
                    server.paths.append(self.path)
                if reply.delay:
                    server.release.wait(reply.delay)
                if reply.close:
                    self.close_connection = True
                    self.connection.close()
                    return
                if 200 <= reply.status < 300:
                    payload = reply.body or {
                        "success": True,
                        "conversationId": str(uuid.uuid4()),
                        "messages": [
                            {
                                "messageId": str(uuid.uuid4()),
                                "messageType": m.get("messageType") or m.get("role"),
                                "externalMessageId": m.get("externalMessageId"),
                                "status": "created",
                            }
                            for m in body.get("messages", [])
                        ],
                        "systemPromptComponentIds": [],
                    }
                else:
                    payload = reply.body or {"error": f"scripted {reply.status}"}
                data = json.dumps(payload).encode()
                # Record before answering: once the client sees a 2xx (and its flush()
                # returns), the body is already visible to the test.
                with server.received:
                    if 200 <= reply.status < 300:
                        server.requests.append(body)
                    server.received.notify_all()
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/api/v1"
        # a short poll: shutdown() at every test's teardown waits up to one poll interval
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Every delivered message (2xx-answered requests), in arrival order."""
        with self.lock:
            return [m for r in self.requests for m in r.get("messages", [])]

    def wait_for(self, predicate: Callable[[CaptureServer], bool], timeout: float = 10.0) -> bool:
        """Block until ``predicate(self)`` holds (event-driven, not a sleep)."""
        deadline = time.monotonic() + timeout
        with self.received:
            while True:
                self.lock.release()
                try:
                    ok = predicate(self)
                finally:
                    self.lock.acquire()
                if ok:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.received.wait(min(remaining, 0.1))

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def capture_server() -> Iterator[CaptureServer]:
    """A fresh loopback capture server for one test."""
    server = CaptureServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def make_client(capture_server: CaptureServer) -> Iterator[Callable[..., gf.GreenflashClient]]:
    """Factory for clients pointed at the capture server; all are shut down afterwards."""
    clients: list[gf.GreenflashClient] = []

    def factory(**kwargs: Any) -> gf.GreenflashClient:
        kwargs.setdefault("base_url", capture_server.base_url)
        kwargs.setdefault("flush_interval", 0.05)
        kwargs.setdefault("shutdown_timeout", 2.0)
        client = gf.GreenflashClient(**kwargs)
        clients.append(client)
        return client

    yield factory
    for c in clients:
        c.shutdown(timeout=1.0)


@pytest.fixture
def gf_client(make_client: Callable[..., gf.GreenflashClient]) -> Iterator[gf.GreenflashClient]:
    """A client pointed at the capture server, also installed as the default client."""
    client = make_client()
    import gf_integrations.client as client_mod

    previous = client_mod._default
    client_mod._default = client
    yield client
    client_mod._default = previous


@pytest.fixture
def collector() -> Iterator[Any]:
    """A real local collector (temp SQLite file, free loopback port) for one test.

    Point clients at ``collector.base_url``; read back with ``collector.messages(ext_id)``,
    ``collector.conversation_tree(ext_id)``, ``collector.conversations()``.
    """
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    from gf_integrations.collector import start_collector

    running = start_collector()
    try:
        yield running
    finally:
        running.stop()

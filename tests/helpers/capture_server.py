"""A real loopback HTTP capture server whose answers tests script (status, headers, delay)."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


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

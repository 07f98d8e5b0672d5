"""Serve an ``httpx`` handler (``httpx.Request -> httpx.Response``) on a real loopback port.

The fake provider servers are written once as ``httpx.MockTransport`` handlers; this puts the
same handler behind a small threaded HTTP server for clients that open their own connections
(or that need a real URL, such as a subprocess)::

    with serve(handler) as base:      # base == "http://127.0.0.1:<port>"
        ...

Bodies are read whole and answered whole (with ``content-length``); an SSE body arrives in one
write, which clients parse exactly as they parse a trickled stream.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

Handler = Callable[[httpx.Request], httpx.Response]

# hop-by-hop or recomputed headers the server sets itself
_SKIP = {"content-length", "transfer-encoding", "connection", "content-encoding"}


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 that answers every request with ``handler``."""

    def __init__(self, handler: Handler) -> None:
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                request = httpx.Request(
                    self.command,
                    f"{outer.base_url}{self.path}",
                    headers=list(self.headers.items()),
                    content=raw,
                )
                response = handler(request)
                data = response.read()
                self.send_response(response.status_code)
                for key, value in response.headers.multi_items():
                    if key.lower() not in _SKIP:
                        self.send_header(key, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def serve(handler: Handler) -> Iterator[str]:
    """Run ``handler`` on a loopback port for the ``with`` block; yields the base URL."""
    server = LoopbackServer(handler)
    try:
        yield server.base_url
    finally:
        server.close()

"""Control a :class:`conftest.CaptureServer` beyond its fixture: take it down, bring it back."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import Any


def server_down(server: Any) -> None:
    """Stop listening and cut open keep-alive connections: every request fails until
    :func:`server_up` (a kept-alive connection would otherwise still be served)."""
    server.httpd.shutdown()
    server.httpd.server_close()
    with server.lock:
        open_connections = list(server.connections)
    for conn in open_connections:
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def server_up(server: Any) -> None:
    """Listen again on the same port, with the same handler (and the same records)."""
    handler = server.httpd.RequestHandlerClass
    httpd = ThreadingHTTPServer(("127.0.0.1", server.port), handler)
    httpd.daemon_threads = True
    server.httpd = httpd
    server.thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    server.thread.start()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes (for state with no event)."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        pause.wait(0.01)
    return True


def run_python(args: list[str], src: str, timeout: float = 60) -> tuple[str, str, float]:
    """Run ``python *args`` with ``src`` on its path: (stdout, stderr, time.time() at its end).

    Fails the test when it exits non-zero.
    """
    env = dict(os.environ, PYTHONPATH=src)
    proc = subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    out, err = proc.communicate(timeout=timeout)
    ended = time.time()
    assert proc.returncode == 0, err
    return out, err, ended

"""Shared fixtures: a real loopback HTTP capture server and clients pointed at it.

The capture server is a real HTTP endpoint on 127.0.0.1 (no mocks of our own code). Tests
can script its answers (status, headers, delay) and read every request body it received.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import gf_integrations as gf
from helpers.capture_server import CaptureServer

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

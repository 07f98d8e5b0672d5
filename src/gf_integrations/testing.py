"""Test helpers for your own test suite: capture what would be sent, without a network.

Example::

    from gf_integrations.testing import capture_messages

    def test_my_chain_is_logged():
        with capture_messages() as captured:
            my_chain.invoke({"q": "hi"}, config={"callbacks": [GreenflashCallbackHandler()]})
        assert [m.get("role") or m.get("messageType") for m in captured.messages] == [
            "user", "assistant"]

Or, with pytest, add ``pytest_plugins = ["gf_integrations.testing"]`` to your
``conftest.py`` and use the ``gf_capture`` fixture.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from . import client as _client_mod
from .client import GreenflashClient
from .transport.exporters import InMemoryExporter

__all__ = ["Captured", "capture_messages", "gf_capture"]


class Captured:
    """What a :func:`capture_messages` block recorded (read after the block ends)."""

    def __init__(self, client: GreenflashClient, exporter: InMemoryExporter) -> None:
        self.client = client
        self.exporter = exporter

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every request body that would have been POSTed to ``/messages``."""
        self.client.flush(5.0)
        return list(self.exporter.requests)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Every message, in delivery order."""
        return [m for r in self.requests for m in r.get("messages", [])]


@contextlib.contextmanager
def capture_messages(**settings: Any) -> Iterator[Captured]:
    """Install a default client that keeps requests in memory for the duration of the block.

    Keyword arguments are passed to :class:`~gf_integrations.GreenflashClient`.
    """
    exporter = InMemoryExporter()
    settings.setdefault("flush_interval", 0.05)
    client = GreenflashClient(exporter=exporter, **settings)
    previous = _client_mod._default
    _client_mod._default = client
    captured = Captured(client, exporter)
    try:
        yield captured
    finally:
        client.flush(5.0)
        _client_mod._default = previous


try:  # the fixture only exists when pytest is importable (it is a test-time helper)
    import pytest

    @pytest.fixture
    def gf_capture() -> Iterator[Captured]:
        """Pytest fixture: a :class:`Captured` with an in-memory default client."""
        with capture_messages() as captured:
            yield captured
            captured.client.shutdown(1.0)

except ImportError:  # pragma: no cover
    pass

"""Reading what the capture server (tests/conftest.py) received, for the integration tests."""

from __future__ import annotations

from typing import Any

import gf_integrations as gf
from gf_integrations.schema import MessageCreateRequest


def kinds(messages: list[dict[str, Any]]) -> list[str]:
    """Each wire message's ``messageType``, or its ``role`` when it has none."""
    return [m.get("messageType") or m.get("role") for m in messages]


def delivered(gf_client: gf.GreenflashClient, capture_server: Any) -> list[dict[str, Any]]:
    """Flush ``gf_client`` and return every message the server accepted, each request
    body checked against the API schema."""
    assert gf_client.flush(10)
    # the capture server files a request after writing its answer: let it catch up
    assert capture_server.wait_for(lambda s: len(s.requests) >= len(s.attempts))
    for body in capture_server.requests:
        MessageCreateRequest.model_validate(body)
    messages: list[dict[str, Any]] = capture_server.messages
    return messages

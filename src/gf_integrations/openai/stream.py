"""The tap on a chat or Responses stream: recorded once when the caller's stream ends.

The SDK's ``Stream`` / ``AsyncStream`` is tapped in place (kit/streams.py); the endpoint's
row (endpoints.py) records what arrived, as partial when the stream ended early.
"""

from __future__ import annotations

from ..kit import StreamTap
from .call import Call


class OpenAIStreamTap(StreamTap[Call]):
    """A chat or Responses stream, every chunk as the caller sees it."""

    __slots__ = ()

    def record(self, how: str, error: BaseException | None) -> None:
        self.call.endpoint.record_stream(self, how, error)

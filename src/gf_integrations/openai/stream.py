"""The tap on a chat or Responses stream: recorded once when the caller's stream ends.

The SDK's ``Stream`` / ``AsyncStream`` is tapped in place (kit/streams.py); the endpoint's
row (endpoints.py) records what arrived, as partial when the stream ended early.
"""

from __future__ import annotations

from typing import Any

from ..kit import StreamTap
from .call import Call


class OpenAIStreamTap(StreamTap[Call]):
    """A chat or Responses stream; hides the usage-only chunk we asked for."""

    __slots__ = ("usage",)

    def __init__(self, call: Call) -> None:
        super().__init__(call)
        self.usage: Any = None

    def keep(self, item: Any) -> bool:
        if self.call.hide_usage and not item.choices:
            self.usage = item.usage  # the usage chunk we asked for: not the caller's
            return False
        return super().keep(item)

    def record(self, how: str, error: BaseException | None) -> None:
        self.call.endpoint.record_stream(self, how, error)

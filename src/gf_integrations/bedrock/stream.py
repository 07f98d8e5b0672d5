"""Tapping botocore's ``EventStream`` in place (``converse_stream``'s ``stream``,
``invoke_model_with_response_stream``'s ``body``): the caller keeps the very object.

``EventStream.__iter__`` reads raw messages from its ``_event_generator`` and parses each
with ``self._parse_event``; both are replaced on the instance, so every parsed event is
noted and the end seen (exhausted, an exception event or a broken connection, ``close()``,
or the stream discarded). The stream records once, at that end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ..kit import StreamTap, finish_when_collected
from ..kit.streams import tap_items
from .call import Call


class BedrockStreamTap(StreamTap[Call]):
    """Notes a Bedrock event stream's parsed events; ``recorder`` records them at the end."""

    __slots__ = ("recorder", "rid")

    def __init__(
        self,
        call: Call,
        rid: str | None,
        recorder: Callable[[BedrockStreamTap, str, BaseException | None], None],
    ) -> None:
        super().__init__(call)
        # the AWS request id, not the response: the response holds the stream, which must
        # stay collectable (an abandoned stream is recorded when it goes)
        self.rid = rid
        self.recorder = recorder

    def record(self, how: str, error: BaseException | None) -> None:
        self.recorder(self, how, error)


def tap_event_stream(stream: Any, tap: BedrockStreamTap) -> None:
    """Route ``stream``'s events through ``tap``; the object and what it yields stay the same."""
    raw: Iterator[Any] = stream._event_generator
    parse: Callable[[Any], Any] = stream._parse_event
    close: Callable[[], None] = stream.close

    def parse_event(message: Any) -> Any:
        try:
            parsed = parse(message)
        except BaseException as exc:  # an exception event: the caller gets EventStreamError
            tap.finish("error", exc)
            raise
        if parsed:
            tap.keep(parsed)
        return parsed

    def close_hook() -> None:
        try:
            close()
        finally:
            if not tap.running:
                tap.finish("closed")

    # raw messages pass as they are (parse_event notes them): the end is seen here
    stream._event_generator = tap_items(raw, tap, note=False)
    stream._parse_event = parse_event
    stream.close = close_hook
    finish_when_collected(stream, tap)

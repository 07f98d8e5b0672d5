"""``messages.stream(...)``: the SDK's stream helper, tapped on its raw stream; before
anthropic 0.43 the helper builds its own stream on the raw stream's response and client,
and is handed a view of that client that notes the events."""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from typing import Any

import anthropic

from ..kit import (
    finish_when_collected,
    watch_aclose,
    watch_close,
)
from ..kit.streams import atap_items, tap_items
from .call import Call, log_failure
from .flow import fail, finish
from .stream import AnthropicStreamTap


def _helper_reads_the_response() -> bool:
    """anthropic < 0.43: the stream helper's ``MessageStream`` is built from the raw stream's
    response and client and reads the response itself; the raw stream is dropped unread."""
    try:
        from anthropic.lib.streaming import MessageStream

        params = inspect.signature(MessageStream.__init__).parameters
    except Exception:
        return False
    return "raw_stream" not in params and "response" in params


HELPER_READS_RESPONSE = _helper_reads_the_response()


def stream_helper(
    original: Callable[..., Any], begin: Callable[[dict[str, Any]], Call | None], is_async: bool
) -> Callable[..., Any]:
    """``messages.stream(...)``: the same manager back, its request tapped when entered.

    The helper posts by itself (not through ``create``), so it is logged once, here.
    """

    @functools.wraps(original)
    def stream(*args: Any, **kwargs: Any) -> Any:
        call = begin(kwargs)
        if call is None:
            return original(*args, **kwargs)
        manager = original(*args, **call.kwargs)
        try:
            _tap_manager(manager, call, is_async)
        except Exception as exc:
            log_failure("stream()", exc)
        return manager

    stream.__gf_wrapped__ = True  # type: ignore[attr-defined]
    return stream


def _tap_manager(manager: Any, call: Call, is_async: bool) -> None:
    # the manager keeps the request as a name-mangled private (`__api_request`): a
    # zero-argument callable (sync) or a coroutine to await (async)
    names = [n for n in vars(manager) if n.endswith("__api_request")]
    if len(names) != 1:
        raise RuntimeError(f"unknown stream manager layout: {type(manager).__name__}")
    name = names[0]
    request = vars(manager)[name]
    if not is_async:

        def send() -> Any:
            call.restart()
            try:
                raw = request()
            except anthropic.AnthropicError as exc:
                fail(call, exc)
                raise
            if HELPER_READS_RESPONSE:
                return _tap_helper_stream(call, raw, is_async)
            return finish(call, raw)

        setattr(manager, name, send)
        return

    setattr(manager, name, _AsyncSend(request, call))


class _AsyncSend:
    """What the async manager awaits on enter; a plain object, so a manager that is never
    entered leaves no un-awaited coroutine of ours behind."""

    __slots__ = ("call", "request")

    def __init__(self, request: Any, call: Call) -> None:
        self.request = request
        self.call = call

    def __await__(self) -> Generator[Any, None, Any]:
        return self._send().__await__()

    async def _send(self) -> Any:
        self.call.restart()
        try:
            raw = await self.request
        except anthropic.AnthropicError as exc:
            fail(self.call, exc)
            raise
        if HELPER_READS_RESPONSE:
            return _tap_helper_stream(self.call, raw, True)
        return finish(self.call, raw)


def _tap_helper_stream(call: Call, raw: Any, is_async: bool) -> Any:
    """anthropic < 0.43: the helper's stream reads ``raw``'s response through ``raw``'s
    client, so that client is seen through a view that notes the events; ``raw`` is
    returned unchanged otherwise (and dropped by the helper, unread)."""
    try:
        tap = AnthropicStreamTap(call)
        view = _ClientView(raw._client, tap)
        raw._client = view
        (watch_aclose if is_async else watch_close)(raw.response, tap)
        finish_when_collected(view, tap)  # the view lives as long as the helper's stream
    except Exception as exc:
        log_failure("stream()", exc)
    return raw


class _ClientView:
    """The SDK client as an old stream helper's own stream uses it: the same, except that
    the events it parses are noted in ``tap``, and the stream's end seen (the decoder)."""

    __slots__ = ("__weakref__", "_gf_client", "_gf_tap")

    def __init__(self, client: Any, tap: AnthropicStreamTap) -> None:
        self._gf_client = client
        self._gf_tap = tap

    def __getattr__(self, name: str) -> Any:
        return getattr(self._gf_client, name)

    def _make_sse_decoder(self) -> Any:
        return _Decoder(self._gf_client._make_sse_decoder(), self._gf_tap)

    def _process_response_data(self, *args: Any, **kwargs: Any) -> Any:
        item = self._gf_client._process_response_data(*args, **kwargs)
        try:
            self._gf_tap.keep(item)
        except Exception as exc:
            log_failure("stream()", exc)
        return item

    def _make_status_error(self, *args: Any, **kwargs: Any) -> Any:
        # an SSE `error` event: the stream raises what this returns
        error = self._gf_client._make_status_error(*args, **kwargs)
        self._gf_tap.finish("error", error)
        return error


class _Decoder:
    """An SSE decoder whose iteration marks the stream's end: exhausted, error, abandoned."""

    __slots__ = ("_gf_decoder", "_gf_tap")

    def __init__(self, decoder: Any, tap: AnthropicStreamTap) -> None:
        self._gf_decoder = decoder
        self._gf_tap = tap

    def __getattr__(self, name: str) -> Any:
        return getattr(self._gf_decoder, name)

    def iter_bytes(self, chunks: Iterator[bytes]) -> Iterator[Any]:
        # the view's client notes each parsed event: here only the end is watched
        return tap_items(self._gf_decoder.iter_bytes(chunks), self._gf_tap, note=False)

    def aiter_bytes(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[Any]:
        return atap_items(self._gf_decoder.aiter_bytes(chunks), self._gf_tap, note=False)

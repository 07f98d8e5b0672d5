"""Stream taps: an SDK's stream object keeps its identity; its private ``_iterator`` is
replaced by a generator that notes each item and records once at the end (exhaustion, an
error, ``close()``, or the stream being discarded)."""

from __future__ import annotations

import time
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any, Generic, TypeVar

from .calls import CallState, wrapper_failed

_C = TypeVar("_C", bound=CallState)


class StreamTap(Generic[_C]):
    """Collects a stream's items (references only) and records once at the end.

    The end is whichever comes first: exhaustion, an error, ``close()`` (seen through the
    HTTP response's close, which the stream's ``close`` and the context managers all
    reach), or the stream being discarded (collected), read or not. Subclasses implement
    :meth:`record`.
    """

    __slots__ = ("call", "done", "first_at", "items", "running")

    def __init__(self, call: _C) -> None:
        self.call = call
        self.items: list[Any] = []
        self.done = False
        self.running = False
        self.first_at: float | None = None

    def keep(self, item: Any) -> bool:
        """Note one stream item; False hides it from the caller."""
        if not self.items:
            self.first_at = time.perf_counter()
        self.items.append(item)
        return True

    def finish(self, how: str, error: BaseException | None = None) -> None:
        """Record once; ``how`` is exhausted / error / closed / abandoned."""
        if self.done:
            return
        self.done = True
        try:
            self.record(how, error)
        except Exception as exc:
            wrapper_failed(self.call.cfg.label, "recording a stream", exc)

    def record(self, how: str, error: BaseException | None) -> None:
        """Record the stream's call from ``self.items``."""
        raise NotImplementedError

    def stream_props(self, how: str, response_id: Any) -> dict[str, Any]:
        """Reply properties of a stream: time to first item, and how it ended if early."""
        props = self.call.properties(response_id)
        props["stream"] = True
        if self.first_at is not None:
            props["timeToFirstTokenMs"] = round((self.first_at - self.call.t0) * 1000, 3)
        if how != "exhausted":
            props["streamEnd"] = how
        return props


def finish_when_collected(owner: Any, tap: StreamTap[Any]) -> None:
    """Finish ``tap`` as abandoned when ``owner`` (what the caller holds) is collected."""
    # a stream dropped before its generator ever ran gets no GeneratorExit: record it
    # when the stream object goes (not at interpreter exit, when the uploader is gone)
    try:
        weakref.finalize(owner, tap.finish, "abandoned").atexit = False
    except TypeError:  # not weak-referenceable: the generator's end still records it
        pass


def tap_items(inner: Iterator[Any], tap: StreamTap[Any], *, note: bool = True) -> Iterator[Any]:
    """``inner``'s items, each noted by ``tap`` (``note=False``: something else notes them,
    and nothing is hidden); ``tap`` finishes once, however the iteration ends."""
    tap.running = True
    try:
        for item in inner:
            if note and not tap.keep(item):
                continue
            tap.running = False
            yield item
            tap.running = True
    except GeneratorExit:
        tap.finish("abandoned")
        raise
    except BaseException as exc:
        tap.finish("error", exc)
        raise
    tap.finish("exhausted")


async def atap_items(
    inner: AsyncIterator[Any], tap: StreamTap[Any], *, note: bool = True
) -> AsyncIterator[Any]:
    """The async twin of :func:`tap_items`."""
    tap.running = True
    try:
        async for item in inner:
            if note and not tap.keep(item):
                continue
            tap.running = False
            yield item
            tap.running = True
    except GeneratorExit:
        tap.finish("abandoned")
        raise
    except BaseException as exc:
        tap.finish("error", exc)
        raise
    tap.finish("exhausted")


def tap_sync(stream: Any, tap: StreamTap[Any]) -> None:
    """Route a Stainless ``Stream``'s items through ``tap``; the object stays the same."""
    inner: Iterator[Any] = stream._iterator

    stream._iterator = tap_items(inner, tap)
    watch_close(stream.response, tap)
    finish_when_collected(stream, tap)


def watch_close(response: Any, tap: StreamTap[Any]) -> None:
    """Finish ``tap`` as closed when the caller closes ``response`` (a sync HTTP response)
    early: the stream's ``close`` and its context managers all reach it."""
    close = response.close

    def close_hook() -> None:
        try:
            close()
        finally:
            if not tap.running:  # a close from inside the stream's own end is not early
                tap.finish("closed")

    response.close = close_hook


def tap_async(stream: Any, tap: StreamTap[Any]) -> None:
    """The ``AsyncStream`` twin of :func:`tap_sync`."""
    inner: AsyncIterator[Any] = stream._iterator

    stream._iterator = atap_items(inner, tap)
    watch_aclose(stream.response, tap)
    finish_when_collected(stream, tap)


def watch_aclose(response: Any, tap: StreamTap[Any]) -> None:
    """The async twin of :func:`watch_close` (``response.aclose``)."""
    aclose = response.aclose

    async def aclose_hook() -> None:
        try:
            await aclose()
        finally:
            if not tap.running:
                tap.finish("closed")

    response.aclose = aclose_hook

"""``generate_content_stream``: the SDK hands back a generator (an async one under
``aio``), so the caller gets a generator of ours over it that notes each chunk and records
the call once when it ends: exhausted, raised, or closed early (``close()``, a ``break``
followed by the generator's collection). A stream never iterated sent no request and is
not recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from ..kit import StreamTap
from .call import Call, log_failure
from .flow import (
    Conversion,
    candidate_parts,
    fail,
    finish_reason,
    record_reply,
    refusal_of,
)


class GeminiStreamTap(StreamTap[Call]):
    """Records a stream of ``GenerateContentResponse`` chunks.

    With automatic function calling the SDK streams several requests in a row; the chunks
    of the second and later ones carry the calling history so far (one list, growing).
    Its length when each chunk arrived tells which chunks the last request answered: they
    are the reply, the history before them the request.
    """

    __slots__ = ("hops",)

    def __init__(self, call: Call) -> None:
        super().__init__(call)
        self.hops: list[int] = []

    def keep(self, item: Any) -> bool:
        try:
            history = getattr(item, "automatic_function_calling_history", None)
            self.hops.append(len(history) if history else 0)
        except Exception:
            self.hops.append(0)
        return super().keep(item)

    def record(self, how: str, error: BaseException | None) -> None:
        call, chunks = self.call, self.items
        if not chunks and error is not None:
            fail(call, error)
            return
        if not chunks:
            return  # closed before the first chunk: nothing was answered
        last = max(self.hops)
        contents: Any = call.contents
        if last:
            history = next(
                getattr(c, "automatic_function_calling_history", None)
                for c, n in zip(chunks, self.hops, strict=True)
                if n == last
            )
            contents = list(history or ())[:last]
        mine = [c for c, n in zip(chunks, self.hops, strict=True) if n == last]
        parts: list[Any] = []
        finish: str | None = None
        usage: Any = None
        model: Any = None
        rid: Any = None
        for chunk in mine:
            parts.extend(candidate_parts(chunk))
            finish = finish_reason(chunk) or finish
            usage = getattr(chunk, "usage_metadata", None) or usage
            model = getattr(chunk, "model_version", None) or model
            rid = rid or getattr(chunk, "response_id", None)
        complete = how == "exhausted" and error is None and finish is not None
        conversion = Conversion(call.system, contents, parts, refusal_of(mine[-1], finish, parts))
        record_reply(
            call,
            conversion,
            model=model,
            usage=usage,
            finish=finish,
            response_id=rid,
            properties=self.stream_props(how, rid),
            error=error,
            partial=not complete,
        )


def tap_generator(stream: Iterator[Any], call: Call) -> Iterator[Any]:
    """The SDK's chunk generator, seen through one that records the call at its end."""
    tap = GeminiStreamTap(call)

    def tapped() -> Iterator[Any]:
        call.restart()  # the SDK sends the request on the first next()
        try:
            for item in stream:
                tap.keep(item)
                yield item
        except GeneratorExit:
            tap.finish("closed")
            _close(stream)
            raise
        except BaseException as exc:
            tap.finish("error", exc)
            raise
        tap.finish("exhausted")

    return tapped()


def _close(stream: Any) -> None:
    try:
        stream.close()
    except Exception as exc:
        log_failure("closing a stream", exc)


def tap_async_generator(stream: AsyncIterator[Any], call: Call) -> AsyncIterator[Any]:
    """The ``async`` twin of :func:`tap_generator`."""
    tap = GeminiStreamTap(call)

    async def tapped() -> AsyncIterator[Any]:
        try:
            async for item in stream:
                tap.keep(item)
                yield item
        except GeneratorExit:
            tap.finish("closed")
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
            raise
        except BaseException as exc:
            tap.finish("error", exc)
            raise
        tap.finish("exhausted")

    return tapped()


def finish_stream(call: Call, stream: Any) -> Any:
    """Hand the caller a recording view of ``stream`` (or ``stream`` itself if it is not
    an iterator we know)."""
    try:
        if hasattr(stream, "__anext__"):
            return tap_async_generator(stream, call)
        if hasattr(stream, "__next__"):
            return tap_generator(stream, call)
    except Exception as exc:
        log_failure("after the call", exc)
    return stream


__all__ = ["GeminiStreamTap", "finish_stream"]

"""Open batches: parts grouped per (path, batch), closed into request bodies."""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable, Hashable
from typing import Any

from .request import Part, Payload


@dataclasses.dataclass(slots=True)
class Batch:
    parts: list[Part]
    size: int  # bytes of the parts plus separating commas
    overhead: int  # bytes the body adds around the parts
    opened: float


class Batcher:
    """Groups parts per ``(path, batch)``; a batch closes at ``max_parts`` parts, before it
    would pass ``max_bytes``, or when asked (age, flush). Closed batches become
    :class:`Payload` s handed to ``closed``; a ``join`` that raises goes to ``failed``.
    Used by one thread at a time (the uploader's worker, or shutdown after it).
    """

    def __init__(
        self,
        max_parts: int,
        max_bytes: int,
        closed: Callable[[Payload], None],
        failed: Callable[[int, Exception], None],
    ) -> None:
        self.max_parts = max_parts
        self.max_bytes = max_bytes
        self._closed = closed
        self._failed = failed
        # in the order they opened (a closed key that reopens goes to the end)
        self.open: collections.OrderedDict[tuple[str, Hashable], Batch] = collections.OrderedDict()

    def __bool__(self) -> bool:
        return bool(self.open)

    def add(self, part: Part) -> None:
        """Add one part (see :class:`Part` for its three kinds).

        A whole body with a ``lane`` closes the open batch of that lane first, so it is
        ahead in line, and the payload carries the lane, so the two are never out at once.
        """
        if part.batch is None:
            lane = part.lane
            if lane is not None and lane in self.open:
                self.close(lane)
            self._closed(Payload(part.path, part.data, part.count, lane))
            return
        key = (part.path, part.batch)
        extra = len(part.data) + 1
        batch = self.open.get(key)
        if batch is not None and max(batch.overhead, part.overhead) + batch.size + extra > (
            self.max_bytes
        ):
            self.close(key)  # the byte cap: close this batch, start a new one for the part
            batch = None
        if batch is None:
            batch = self.open[key] = Batch([], 0, part.overhead, time.monotonic())
        batch.parts.append(part)
        batch.size += extra
        batch.overhead = max(batch.overhead, part.overhead)
        if len(batch.parts) >= self.max_parts:
            self.close(key)

    def close(self, key: tuple[str, Hashable]) -> None:
        """Build the body of one open batch and hand it on."""
        parts = self.open.pop(key).parts
        join = parts[0].join
        assert join is not None
        count = sum(p.count for p in parts)
        try:
            body = join(parts)
        except Exception as exc:
            self._failed(count, exc)
            return
        self._closed(Payload(parts[0].path, body, count, key))

    def close_older(self, opened_before: float) -> None:
        """Close every batch opened before ``opened_before`` (``inf``: all of them)."""
        due: list[Any] = []
        for key, batch in self.open.items():
            if batch.opened >= opened_before:
                break  # kept in the order they opened: the rest are younger
            due.append(key)
        for key in due:
            self.close(key)

    def oldest(self) -> float | None:
        """When the oldest open batch opened, or None."""
        for batch in self.open.values():
            return batch.opened
        return None

"""The transport's units of work: a :class:`Part` of a request, a :class:`Payload` to send."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any


@dataclasses.dataclass(slots=True, eq=False)
class Part:
    """One piece of a request the uploader batches and ships, already encoded.

    Three kinds, by which fields are set:

    * ``batch`` and ``join``: an element of a batched request. Parts with the same
      ``path`` and ``batch`` are merged into one request (``join`` builds its body from
      them, in order, when the batch closes), e.g. one conversation's messages.
    * ``lane`` only: a whole body that must follow every request of that lane: the open
      batch whose ``(path, batch)`` is ``lane`` closes first, and the two are never out at
      once (a rating after the messages of its conversation; a user's profile updates
      after each other).
    * neither: a whole body on its own.

    Attributes:
        path: API path the request goes to, e.g. ``"/messages"`` or ``"/ratings"``.
        data: the encoded element (a message), or the whole body.
        batch: grouping key of a batched request (for ``/messages``: the conversation).
        join: builds the request body from a batch of parts (required with ``batch``).
        lane: ``(path, batch)`` of the requests this whole body must follow.
        overhead: bytes the body adds around the parts (envelope), for the byte cap.
        count: items it carries, for ``stats()`` (messages, ratings...).
        meta: anything ``join`` needs (opaque to the transport).

    Raises:
        ValueError: when ``batch`` and ``join`` are not given together, or a batched
            part also names a ``lane`` (its lane is its batch).
    """

    path: str
    data: bytes
    batch: Hashable | None = None
    join: Callable[[Sequence[Part]], bytes] | None = None
    lane: tuple[str, Hashable] | None = None
    overhead: int = 0
    count: int = 1
    meta: Any = None

    def __post_init__(self) -> None:
        if (self.batch is None) != (self.join is None):
            raise ValueError("Part: batch and join go together")
        if self.batch is not None and self.lane is not None:
            raise ValueError("Part: a batched part's lane is its batch")


@dataclasses.dataclass(slots=True, eq=False)
class Payload:
    """One request body on its way: closed batch, retry state and spool file."""

    path: str
    body: bytes
    count: int
    # requests of one lane go out one at a time, in order (a conversation's batches)
    lane: Hashable | None = None
    spool_path: Path | None = None
    attempt: int = 0
    first_failure: float = 0.0  # monotonic time of the first failed attempt
    due: float = 0.0
    # Set when shutdown took this payload over and spooled it: a late answer then only
    # deletes the spool file.
    handed_off: bool = False

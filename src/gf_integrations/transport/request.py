"""The transport's unit of work: a :class:`Part` of a request to one API path."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Sequence
from typing import Any


@dataclasses.dataclass(slots=True, eq=False)
class Part:
    """One piece of a request the uploader batches and ships, already encoded.

    Parts with the same ``path`` and a non-None ``key`` are merged into one request
    (``join`` builds its body from them, in order, when the batch closes); a part with
    ``key=None`` is a whole request body on its own. A part with ``join=None`` and a
    ``key`` is a whole body that must follow the batch ``key`` names (its ``(path, key)``,
    e.g. a rating after the messages of its conversation).

    Attributes:
        path: API path the request goes to, e.g. ``"/messages"`` or ``"/ratings"``.
        key: grouping key (for ``/messages``: the conversation identity); with
            ``join=None``, the ``(path, key)`` of the batch this body follows.
        data: the encoded element (a message), or the whole body when ``key`` is None.
        join: builds the request body from a batch of parts (None: ``data`` is the body).
        overhead: bytes the body adds around the parts (envelope), for the byte cap.
        count: items it carries, for ``stats()`` (messages, ratings...).
        meta: anything ``join`` needs (opaque to the transport).
    """

    path: str
    key: Hashable | None
    data: bytes
    join: Callable[[Sequence[Part]], bytes] | None = None
    overhead: int = 0
    count: int = 1
    meta: Any = None

"""Maps and sets bounded in count (and, for per-run state, in age): whatever a framework
fails to close or a process sees forever, memory stays flat.

* :class:`BoundedMap`: the ``limit`` newest entries, oldest first out (``lru=True``: the
  least recently used first out); lock-free, safe from any thread.
* :class:`BoundedSet`: the ``limit`` newest ints, at about 80 bytes an entry.
* :class:`RunRegistry`: per-run state with a count cap and a time-to-live (the sweep policy
  of docs/DESIGN.md section 5).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Hashable, ItemsView, Iterator, ValuesView
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedMap(Generic[K, V]):
    """A map holding at most ``limit`` entries; safe from any thread without a lock.

    It sits on the host's hot path (one ``put`` per recorded answer), so it takes no lock:
    each OrderedDict operation is atomic, and two racing evictions at worst evict one entry
    early. (An OrderedDict, not a dict: evicting a dict's first entry over and over scans
    the holes left by earlier evictions.) With ``lru`` a ``get`` refreshes the entry.
    """

    __slots__ = ("_data", "_limit", "_lru")

    def __init__(self, limit: int, *, lru: bool = False) -> None:
        if limit < 1:
            raise ValueError("BoundedMap needs limit >= 1")
        self._limit = limit
        self._lru = lru
        self._data: collections.OrderedDict[K, V] = collections.OrderedDict()

    def put(self, key: K, value: V) -> None:
        """Insert or refresh ``key``; the oldest entry goes beyond the limit."""
        data = self._data
        data[key] = value
        data.move_to_end(key)
        if len(data) > self._limit:
            try:
                data.popitem(last=False)
            except KeyError:
                pass  # emptied by another thread meanwhile

    def get(self, key: K) -> V | None:
        """The value for ``key``, or None."""
        value = self._data.get(key)
        if value is not None and self._lru:
            try:
                self._data.move_to_end(key)
            except KeyError:
                pass  # evicted by another thread meanwhile
        return value

    def pop(self, key: K) -> V | None:
        """Remove and return the value for ``key``, or None."""
        return self._data.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)


class BoundedSet:
    """The newest ``limit`` ints added (the recorder's sent message ids).

    Keys are ``hash((conversation, id))`` ints, in a set plus a FIFO of them: ~4 MB at the
    cap, where an OrderedDict (a linked node per entry) took ~10 MB.
    """

    __slots__ = ("_ids", "_order", "limit")

    def __init__(self, limit: int) -> None:
        self._ids: set[int] = set()
        self._order: collections.deque[int] = collections.deque()
        self.limit = limit

    def __contains__(self, key: int) -> bool:
        return key in self._ids

    def add(self, key: int) -> None:
        ids = self._ids
        if key in ids:
            return
        ids.add(key)
        order = self._order
        order.append(key)
        if len(order) > self.limit:
            ids.discard(order.popleft())

    def __len__(self) -> int:
        return len(self._ids)


class RunRegistry(Generic[K, V]):
    """Per-run state keyed by the framework's run (span) id, bounded in count and age.

    Sweep policy (the one every integration uses): after a ``put``, a sweep runs when the
    map holds more than ``cap`` entries or when ``sweep_every`` seconds of ``clock`` time
    have passed since the last sweep, whichever comes first. A sweep drops every entry
    whose ``stamp(value)`` is older than ``ttl`` seconds, then, if the map is still over
    ``cap``, the oldest entries (insertion order) down to 7/8 of ``cap`` (the headroom
    keeps a full map from being swept on every ``put``). ``on_drop(key, value)`` is called
    for each entry dropped (under no lock of ours; its errors are swallowed). ``stamp`` and
    ``clock`` must use the same clock. A sweep that finds another sweep running returns at
    once: ``put`` never waits.
    """

    __slots__ = (
        "_data",
        "_last_sweep",
        "_sweep_lock",
        "cap",
        "clock",
        "on_drop",
        "stamp",
        "sweep_every",
        "ttl",
    )

    def __init__(
        self,
        *,
        cap: int,
        ttl: float,
        stamp: Callable[[V], float],
        clock: Callable[[], float] = time.monotonic,
        sweep_every: float = 2.0,
        on_drop: Callable[[K, V], None] | None = None,
    ) -> None:
        if cap < 1 or ttl <= 0 or sweep_every <= 0:
            raise ValueError("RunRegistry needs cap >= 1, ttl > 0 and sweep_every > 0")
        self._data: dict[K, V] = {}
        self.cap = cap
        self.ttl = ttl
        self.stamp = stamp
        self.clock = clock
        self.sweep_every = sweep_every
        self.on_drop = on_drop
        self._sweep_lock = threading.Lock()
        self._last_sweep = clock()

    # plain dict operations: a lookup of an unknown key never raises
    def get(self, key: K) -> V | None:
        """The entry, or None."""
        return self._data.get(key)

    def pop(self, key: K) -> V | None:
        """Remove and return the entry, or None."""
        return self._data.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._data))

    def values(self) -> ValuesView[V]:
        """A live view of the entries (copy it before iterating from another thread)."""
        return self._data.values()

    def items(self) -> ItemsView[K, V]:
        """A live view of the entries (copy it before iterating from another thread)."""
        return self._data.items()

    def clear(self) -> None:
        """Forget everything (no ``on_drop``)."""
        self._data.clear()

    def put(self, key: K, value: V, ttl: float | None = None) -> None:
        """Insert or replace, then sweep if the policy says so (with ``ttl`` if given)."""
        self._data[key] = value
        self._after_insert(ttl)

    def setdefault(self, key: K, value: V, ttl: float | None = None) -> V:
        """Insert unless present (atomic); the entry now held. Sweeps like :meth:`put`."""
        held = self._data.setdefault(key, value)
        if held is value:
            self._after_insert(ttl)
        return held

    def _after_insert(self, ttl: float | None) -> None:
        if len(self._data) > self.cap or self.clock() - self._last_sweep >= self.sweep_every:
            self.sweep(ttl=ttl)

    def sweep(self, now: float | None = None, ttl: float | None = None) -> int:
        """Drop expired entries and the oldest beyond the cap; how many were dropped.

        ``now`` / ``ttl`` override the clock and the time-to-live (tests, shutdown).
        """
        if not self._sweep_lock.acquire(blocking=False):
            return 0
        try:
            now = self.clock() if now is None else now
            self._last_sweep = now
            cutoff = now - (self.ttl if ttl is None else ttl)
            items = list(self._data.items())
            stamp = self.stamp
            stale = [(k, v) for k, v in items if stamp(v) < cutoff]
            overflow = len(items) - len(stale) - self.cap
            if overflow > 0:
                overflow += self.cap // 8
                # dict order is insertion order: the first ones are the oldest
                stale.extend([(k, v) for k, v in items if stamp(v) >= cutoff][:overflow])
        finally:
            self._sweep_lock.release()
        dropped = 0
        for key, value in stale:
            if self._data.get(key) is value:
                self._data.pop(key, None)
                dropped += 1
                if self.on_drop is not None:
                    try:
                        self.on_drop(key, value)
                    except Exception:
                        pass
        return dropped

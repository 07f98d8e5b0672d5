"""The uploader's bookkeeping: counters, and the registry of live uploaders that the
one exit pass and the one fork hook go through."""

from __future__ import annotations

import atexit
import contextlib
import threading
import time
import weakref
from typing import Any


class Counters:
    """Delivery counters, readable from any thread (``client.stats()``)."""

    NAMES = (
        "batches_sent",
        "dropped_fatal",
        "dropped_oversize",
        "dropped_queue_full",
        "dropped_retries",
        "dropped_shutdown",
        "failed_mapping",
        "retried",
        "sampled_out",
        "sent",
        "shrunk_oversize",
        "spooled",
        "unspooled",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, int] = dict.fromkeys(self.NAMES, 0)

    def bump(self, name: str, n: int = 1) -> None:
        """Add ``n`` to a counter."""
        with self._lock:
            self._values[name] += n

    def set(self, name: str, value: int) -> None:
        """Set a counter owned by one writer."""
        with self._lock:
            self._values[name] = value

    def __getattr__(self, name: str) -> int:
        # counters read as attributes: ``uploader.counters.sent``
        if name.startswith("_"):
            raise AttributeError(name)
        return self.as_dict()[name]

    def as_dict(self) -> dict[str, int]:
        """A snapshot, plus ``dropped`` (the sum of every ``dropped_*``)."""
        with self._lock:
            snap = dict(self._values)
        snap["dropped"] = sum(v for k, v in snap.items() if k.startswith("dropped_"))
        return snap


# Every live uploader, so that exit makes ONE bounded pass over all of them: they stop
# together and share the longest shutdown budget instead of waiting one after another.
_live: weakref.WeakSet[Any] = weakref.WeakSet()
_live_lock = [threading.Lock()]  # a list so the fork hook can replace it


def register(uploader: Any) -> None:
    """Include ``uploader`` in the exit pass (held weakly)."""
    with _live_lock[0]:
        _live.add(uploader)


def _shutdown_all_at_exit() -> None:
    with contextlib.suppress(Exception):
        with _live_lock[0]:
            uploaders = list(_live)
        if not uploaders:
            return
        deadline = time.monotonic() + max(u.settings.shutdown_timeout for u in uploaders)
        started = [u for u in uploaders if u._begin_shutdown(deadline, at_exit=True)]
        for u in started:
            with contextlib.suppress(Exception):
                u._finish_shutdown(deadline)


def live() -> list[Any]:
    """Every live uploader."""
    with _live_lock[0]:
        return list(_live)


def reinit_after_fork() -> None:
    """In a forked child (from the uploader's fork hook): a fresh registry lock."""
    _live_lock[0] = threading.Lock()


atexit.register(_shutdown_all_at_exit)

"""The uploader's background thread and its buffer."""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Callable
from typing import Any

from ..common.once import OnceLog

# After waking for new items the worker waits this long before its turn, so a steady
# stream of calls wakes it at most ~50 times a second instead of once per call: every
# wake-up is a GIL hand-off that the host's thread pays for.
LINGER = 0.02


class Worker:
    """A daemon thread that runs ``on_start()``, then ``turn(stopping)`` whenever there is
    work.

    Producers :meth:`push` items into :attr:`buf` (a deque append) and wake the thread at
    most once per turn. ``turn`` returns True when the thread should exit (after a
    shutdown); ``next_wait()`` says how long it may sleep when nobody wakes it. Waiters
    (``flush``) sleep on :attr:`idle`, notified after every turn.
    """

    def __init__(
        self,
        turn: Callable[[bool], bool],
        next_wait: Callable[[], float],
        on_start: Callable[[], None],
        once: OnceLog,
    ) -> None:
        self.buf: collections.deque[Any] = collections.deque()
        self.lock = threading.Lock()  # the thread handle and `urgent`; idle's lock
        self.idle = threading.Condition(self.lock)
        self.urgent = 0  # >0 while a flush or shutdown wants batches sent now
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self._turn = turn
        self._next_wait = next_wait
        self._on_start = on_start
        self._once = once
        self._wake = threading.Event()
        self._armed = False  # a producer already woke the thread for this turn
        self._linger_cut = threading.Event()

    def push(self, item: Any) -> None:
        """Queue ``item``; wake the thread once per turn, not once per item."""
        self.buf.append(item)
        if not self._armed:
            self._armed = True
            self._wake.set()

    def wake(self) -> None:
        """Something other than a new item needs the thread (an answer arrived)."""
        self._wake.set()

    def hurry(self) -> None:
        """Take a turn now, without lingering (a flush or shutdown waits)."""
        self._linger_cut.set()
        self._wake.set()

    def start(self) -> bool:
        """Start the thread unless it runs; False when it cannot (interpreter exiting)."""
        with self.lock:
            if self.thread is not None:
                return True
            thread = threading.Thread(
                target=self._run, name="gf-integrations-uploader", daemon=True
            )
            try:
                thread.start()
            except RuntimeError:
                return False  # interpreter shutting down: give up quietly, like sentry does
            self.thread = thread
            return True

    def on_thread(self) -> bool:
        return threading.current_thread() is self.thread

    def _run(self) -> None:
        try:
            with contextlib.suppress(Exception):
                self._on_start()  # e.g. a sender process starts while we batch
            while True:
                woke = self._wake.wait(self._next_wait())
                self._wake.clear()
                self._armed = False
                stopping = self.stopping.is_set()
                if woke and self.buf and not self.urgent and not stopping:
                    self._linger_cut.wait(LINGER)  # flush() and shutdown() cut it short
                    self._linger_cut.clear()
                try:
                    done = self._turn(stopping)
                except Exception as exc:  # keep the worker alive whatever happens
                    done = False
                    self._once.warn(
                        f"worker:{type(exc).__name__}",
                        f"gf_integrations: uploader error ({type(exc).__name__}); continuing",
                    )
                with self.lock:
                    self.idle.notify_all()
                if self.buf:
                    self._wake.set()  # more than one turn's worth is waiting
                if done:
                    return
        finally:
            with self.lock:
                if self.thread is threading.current_thread():
                    self.thread = None  # a dying worker is restarted by the next submit
                self.idle.notify_all()

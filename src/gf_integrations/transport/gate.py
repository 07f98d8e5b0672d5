"""The pipeline gate: one thread at a time prepares items and moves batches, normally the
worker; the host's threads take a turn only when the worker is starved (docs/DESIGN.md
section 3, step 2: the allocation assist)."""

from __future__ import annotations

import threading

_HANDOVER_WAIT = 0.002  # seconds a host thread may wait for a preempted holder


class PipelineGate:
    """Holds the pipeline lock and decides whose turn it is.

    Everything between the buffer and the shipper (preparing items, batches, requests out,
    retries) changes only under :attr:`lock`, so the order of a conversation's messages
    holds whoever does the work. A host thread only ever tries the lock, never waits on it.

    A host thread that keeps releasing the GIL for a moment (a syscall on every call, an
    event loop's poll) takes it back before a waiting thread wakes, and starves every
    background thread. When ``assist_at`` items are queued, or half the memory bound is
    used (``held_at``: queued items plus messages held in batches and requests), the
    submitting threads start taking turns (:meth:`host_turn`): each prepares two items
    (so the backlog shrinks while the host keeps producing), closes due batches and ships
    them; they stop once both are down to half. Meanwhile the worker
    leaves preparing to them while they make progress (:meth:`worker_prepares`).
    """

    def __init__(self, assist_at: int, held_at: int) -> None:
        self.assist_at = max(assist_at, 1)
        self.held_at = max(held_at, 1)
        self.lock = threading.Lock()
        self.by_hosts = 0  # items the host's threads prepared (stats: prepared_by_callers)
        self._assisting = False
        self._seen = -1  # by_hosts when the worker last left preparing to the host
        self._here = threading.local()  # .active: this thread is preparing

    def host_turn(self, queued: int, held: int) -> bool:
        """Called by a submitting thread with the items queued and the messages held: True
        when it should work the pipeline now, and then it holds :attr:`lock` (release with
        :meth:`end_host_turn`)."""
        total = queued + held
        if queued >= self.assist_at or total >= self.held_at:
            self._assisting = True
        elif self._assisting and queued < self.assist_at // 2 and total < self.held_at // 2:
            self._assisting = False  # caught up: the worker takes over again
        if not self._assisting:
            return False
        if not self.lock.acquire(blocking=False):
            # The holder is a starved thread (preempted in a short slice). Past twice the
            # mark, wait for it a moment: waiting hands it the GIL, so it finishes its
            # slice; bounded, and never on the network.
            if queued < 2 * self.assist_at or not self.lock.acquire(timeout=_HANDOVER_WAIT):
                return False
        self._here.active = True
        return True

    def end_host_turn(self, prepared: int) -> None:
        """A host thread's turn is over; it prepared ``prepared`` items."""
        self.by_hosts += prepared
        self._here.active = False
        self.lock.release()

    def worker_prepares(self, urgent: bool) -> bool:
        """Called by the worker holding :attr:`lock`: should it prepare queued items now?

        Not while the host's threads are assisting and making progress (the worker is
        starved; its turns are rare and best spent on sending), except when a flush or
        shutdown waits. The first time, the host gets the chance to start.
        """
        if not self._assisting or urgent:
            return True
        if self.by_hosts != self._seen:
            self._seen = self.by_hosts
            return False
        self._assisting = False  # they stopped submitting: take over
        self._seen = -1
        return True

    def preparing_here(self) -> bool:
        """This thread is preparing an item (a mask that calls ``flush`` must not wait)."""
        return bool(getattr(self._here, "active", False))

"""Delivery: batches, requests out, retries and the spool (policy: docs/DESIGN.md section 6).

The transport is the lowest floor: it ships the bytes it is handed and knows nothing of the
client's configuration. ``core.settings.Settings.delivery`` validates the user's options
and hands over :class:`DeliverySettings`.

Every method of :class:`Delivery` runs under the pipeline lock (:mod:`.gate`), on the
worker or on an assisting host thread, except :meth:`Delivery.answer` (any thread) and
the spooling at shutdown, which takes the lock itself.
"""

from __future__ import annotations

import collections
import dataclasses
import heapq
import itertools
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from ..common.once import OnceLog
from .batcher import Batcher
from .exporters import ExportResult
from .request import Part, Payload
from .retry import Action, RetryPolicy
from .shippers import Shipper
from .spool import Spool
from .state import Counters

log = logging.getLogger("gf_integrations")

_SPOOL_LANE = ("spool",)


@dataclasses.dataclass(frozen=True)
class DeliverySettings:
    """Caps and timings of one uploader (see docs/DESIGN.md section 6 for the policy); the
    defaults and the checks are ``core.settings.Settings``'s."""

    max_queue_size: int
    max_batch_messages: int
    max_batch_bytes: int
    flush_interval: float
    request_timeout: float
    retry_budget: float
    max_backoff: float
    max_retry_after: float
    shutdown_timeout: float
    max_concurrent_requests: int
    spool_dir: str | None


class Delivery:
    """What happens to parts once prepared: batches, shipping, answers, retries, spool.

    Args:
        settings: caps and timings.
        counters: the uploader's counters.
        shipper_factory: ``(on_done) -> Shipper``, called on first use.
        spool: where undeliverable batches go, or None.
        once: the uploader's once-only warnings.
        wake: called when an answer arrives (the worker should take it).
    """

    def __init__(
        self,
        settings: DeliverySettings,
        counters: Counters,
        shipper_factory: Callable[[Callable[[Any, ExportResult], None]], Shipper],
        spool: Spool | None,
        once: OnceLog,
        wake: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.counters = counters
        self.spool = spool
        self._shipper_factory = shipper_factory
        self._once = once
        self._wake = wake
        self.policy = RetryPolicy(
            settings.retry_budget, settings.max_backoff, settings.max_retry_after
        )
        self.ready: collections.deque[Payload] = collections.deque()
        self.batches = Batcher(
            settings.max_batch_messages,
            settings.max_batch_bytes,
            self.ready.append,
            self._join_failed,
        )
        self.waiting: list[tuple[float, int, Payload]] = []  # retry timers (heap)
        self.inflight: set[Payload] = set()
        self._busy_lanes: set[Any] = set()  # lanes with a request out or a retry waiting
        self.answers: collections.deque[tuple[Payload, ExportResult]] = collections.deque()
        self._seq = itertools.count()
        # Messages in batches, waiting or in flight: what submit() counts against
        # max_queue_size besides the buffer. Changed under the pipeline lock only.
        self.held = 0
        self.shipper: Shipper | None = None
        self.deadline: float | None = None  # flush/shutdown deadline (monotonic)
        self.paused_until = 0.0  # server-wide pause
        self._probing = False  # after a pause: one request out until one succeeds
        self._server_failures = 0  # consecutive server-wide failures (pause backoff)
        self.resending = False  # spool files are being resent
        self._spool_files: Any = None  # iterator over claimed spool files
        self._spooled_earlier = False  # resend what this run spooled once the server is back
        self.failures = 0  # messages lost or spooled, for flush()'s verdict

    # -- parts in --------------------------------------------------------------------------

    def add(self, parts: list[Part] | tuple[Part, ...]) -> None:
        for part in parts:
            self.held += part.count
            self.batches.add(part)

    def _join_failed(self, count: int, exc: Exception) -> None:
        self.held -= count
        self.counters.bump("failed_mapping", count)
        self._once.warn(
            f"join:{type(exc).__name__}",
            f"gf_integrations: could not build a request ({type(exc).__name__}); skipped",
        )

    def close_due(self, opened_before: float) -> None:
        """Close every batch opened before ``opened_before`` (``inf``: all of them)."""
        self.batches.close_older(opened_before)

    def idle(self) -> bool:
        """Nothing held: no batch open, ready, waiting, out, answered or being resent."""
        return not (
            self.batches
            or self.ready
            or self.waiting
            or self.inflight
            or self.answers
            or self.resending
        )

    # -- sending -----------------------------------------------------------------------------

    def get_shipper(self) -> Shipper:
        if self.shipper is None:
            self.shipper = self._shipper_factory(self.answer)
        return self.shipper

    def take_jobs(self, now: float) -> list[tuple[Any, float]]:
        """The ready payloads to ship now (marked in flight): due retries first, up to the
        shipper's window. :meth:`ship` them after leaving the gate."""
        while self.waiting and self.waiting[0][0] <= now:
            _, _, item = heapq.heappop(self.waiting)
            self._busy_lanes.discard(item.lane)
            self.ready.appendleft(item)
        if now < self.paused_until or not self.ready:
            return []
        shipper = self.get_shipper()
        limit = 1 if self._probing else shipper.window
        if len(self.inflight) >= limit:
            return []
        timeout = self.settings.request_timeout
        if self.deadline is not None:
            timeout = min(timeout, max(self.deadline - now, 0.05))
        skipped: list[Payload] = []
        jobs: list[tuple[Any, float]] = []
        while self.ready and len(self.inflight) < limit:
            item = self.ready.popleft()
            if item.lane is not None:
                if item.lane in self._busy_lanes:
                    skipped.append(item)  # that lane has a request out: keep its order
                    continue
                self._busy_lanes.add(item.lane)
            self.inflight.add(item)
            jobs.append((item, timeout))
        self.ready.extendleft(reversed(skipped))
        return jobs

    def ship(self, jobs: list[tuple[Any, float]]) -> None:
        """Hand jobs to the shipper, all at once (one pipe write for a sender process).
        Called outside the gate: a write that waits holds up nobody's turn. Jobs of one lane
        are never out together, so two threads shipping keep every lane's order."""
        if jobs:
            self.get_shipper().ship(jobs)

    def poll(self) -> None:
        """Take in the answers the shipper already has, without waiting for its thread."""
        if self.shipper is not None:
            self.shipper.poll()

    def answer(self, item: Payload, result: ExportResult) -> None:
        """Called by the shipper, from any thread, once per request."""
        self.answers.append((item, result))
        self._wake()

    def take_answers(self) -> None:
        while self.answers:
            item, result = self.answers.popleft()
            self.inflight.discard(item)
            if item.handed_off:  # shutdown spooled it meanwhile
                if result.ok:
                    Spool.forget(item.spool_path)
                continue
            self._settle(item, result)

    def _settle(self, item: Payload, result: ExportResult) -> None:
        now = time.monotonic()
        item.attempt += 1
        if item.attempt == 1:
            item.first_failure = now
        verdict = self.policy.decide(
            result,
            item.attempt,
            failing_for=now - item.first_failure,
            server_failures=self._server_failures,
            can_spool=self.spool is not None,
            time_left=None if self.deadline is None else self.deadline - now,
        )
        action = verdict.action
        if action is Action.DONE:
            self._busy_lanes.discard(item.lane)
            self.held -= item.count
            self.counters.bump("sent", item.count)
            self.counters.bump("batches_sent")
            Spool.forget(item.spool_path)
            self._server_failures = 0
            self._probing = False
            if self.spool is not None and item.spool_path is None and self._spooled_earlier:
                self._spooled_earlier = False
                self.resending = True  # the server is back: resend what was spooled
        elif action is Action.REJECT:
            self._busy_lanes.discard(item.lane)
            self.held -= item.count
            self._reject(item, result)
        elif action is Action.GIVE_UP:
            self._busy_lanes.discard(item.lane)
            self.give_up(item, result)
        else:
            if action is Action.PAUSE:
                self._server_failures += 1
                self.paused_until = max(self.paused_until, now + verdict.delay)
                self._probing = True
            self.counters.bump("retried")
            item.due = now + verdict.delay
            heapq.heappush(self.waiting, (item.due, next(self._seq), item))

    def _reject(self, item: Payload, result: ExportResult) -> None:
        self.counters.bump("dropped_fatal", item.count)
        self.failures += item.count
        Spool.forget(item.spool_path)
        log.error(
            "gf_integrations: Greenflash rejected a batch of %d message(s): HTTP %s %s",
            item.count,
            result.status,
            result.detail,
        )

    def give_up(self, item: Payload, result: ExportResult | None) -> None:
        """Out of time or budget: spool the batch (or count it lost)."""
        self.held -= item.count
        self.failures += item.count
        if item.handed_off:
            return  # shutdown already spooled it
        item.handed_off = True
        if item.spool_path is not None:
            self.resending = False  # still down: leave the rest of the spool for later
            self._spool_files = None
        why = "shutdown deadline" if result is None else (result.status or result.detail)
        if self._spool_write(item):
            self._once.warn(
                "spooled",
                f"gf_integrations: Greenflash unreachable ({why}); batches are kept in "
                f"{self.spool.folder if self.spool else None} and resent on next start",
            )
        else:
            self.counters.bump("dropped_retries", item.count)
            self._once.warn(
                "gave_up",
                f"gf_integrations: could not deliver a batch ({why}); dropped "
                f"{item.count} message(s). Set spool_dir to keep undelivered batches.",
            )

    # -- spool ---------------------------------------------------------------------------------

    def _spool_write(self, item: Payload) -> bool:
        if self.spool is None:
            return False
        fresh = item.spool_path is None
        try:
            item.spool_path = self.spool.keep(item.path, item.body, item.spool_path)
        except OSError as exc:
            self._once.warn(
                "spool_error", f"gf_integrations: could not write the spool ({type(exc).__name__})"
            )
            return False
        if fresh:
            self._spooled_earlier = True
            self.counters.bump("spooled", item.count)
        return True

    def resend_spool(self, stopping: bool) -> None:
        """Feed claimed spool files to the shipper, a few at a time."""
        if not self.resending or self.spool is None or stopping:
            self.resending = False
            return
        if self._spool_files is None:
            self._spool_files = self.spool.resends()
        for _ in range(self.settings.max_concurrent_requests - len(self.ready)):
            try:
                claimed, path, body, count = next(self._spool_files)
            except StopIteration:
                self._spool_files = None
                self.resending = False
                return
            self.counters.bump("unspooled", count)
            self.held += count
            # one spool file out at a time, oldest first: a conversation's batches keep
            # their order (a message must not arrive before its parent)
            self.ready.append(Payload(path, body, count, _SPOOL_LANE, spool_path=claimed))

    def _oldest_first(self) -> list[Payload]:
        """Every batch held, in the order the spool must resend them: a conversation's
        request in flight or waiting to retry comes before its batches that are ready."""
        flying = [p for p in self.inflight if not p.handed_off]
        return flying + [w[2] for w in sorted(self.waiting)] + list(self.ready)

    def spool_now(self) -> int:
        """Spool every batch held (open ones closed first) and keep running; returns the
        messages spooled. A batch the spool cannot take stays where it was."""
        self.batches.close_older(math.inf)
        # what is spooled now waits for the next resend, not for this one
        self.resending = False
        self._spool_files = None
        items = self._oldest_first()
        ready = list(self.ready)
        self.ready.clear()  # the same deque: the batcher appends to it
        self.waiting = []
        spooled = 0
        for item in items:
            if not self._spool_write(item):  # it stays where it was
                if item in ready:
                    self.ready.append(item)
                elif item not in self.inflight:
                    heapq.heappush(self.waiting, (item.due, next(self._seq), item))
                continue
            item.handed_off = True
            self.inflight.discard(item)
            self._busy_lanes.discard(item.lane)
            self.held -= item.count
            spooled += item.count
        return spooled

    def spool_leftovers(self) -> int:
        """At shutdown: spool every batch not yet delivered (open ones closed first), the
        ones a hung request holds included, oldest first; returns the messages that could
        not be kept. If such a request lands after all, its answer deletes the spool file
        (and a resend would be deduplicated)."""
        self.batches.close_older(math.inf)
        leftovers = self._oldest_first()
        self.ready.clear()
        self.waiting.clear()
        lost = 0
        for item in leftovers:
            item.handed_off = True
            if not self._spool_write(item):
                lost += item.count
        return lost

    def next_due(self, now: float) -> float | None:
        """When something held needs the worker next (monotonic), or None."""
        due = math.inf
        oldest = self.batches.oldest()
        if oldest is not None:
            due = oldest + self.settings.flush_interval
        if self.waiting:
            due = min(due, self.waiting[0][0])
        if self.ready:  # paused, at the window, or behind a busy lane
            due = min(due, self.paused_until if self.paused_until > now else now + 0.05)
        return None if due == math.inf else due

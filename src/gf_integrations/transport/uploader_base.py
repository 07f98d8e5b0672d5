"""The uploader's state, sending, retries and spool (policy: docs/DESIGN.md section 6)."""

from __future__ import annotations

import collections
import contextlib
import heapq
import itertools
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..common.once import OnceLog
from .batcher import Batcher
from .delivery import DeliverySettings
from .exporters import Exporter, ExportResult
from .request import Part
from .shippers import Shipper, ThreadShipper
from .spool import Spool
from .state import Counters, Payload, call_ref, register

log = logging.getLogger("gf_integrations")

_SERVER_WIDE = frozenset({429, 503})
_SPOOL_KEY = ("spool",)

Prepare = Callable[[Any], Iterable[Part]]


def backoff_delay(
    attempt: int, retry_after: float | None, max_backoff: float, max_retry_after: float
) -> float:
    """The retry policy's wait before attempt ``attempt + 1``: capped, jittered exponential
    backoff; a server's ``Retry-After`` acts as a minimum, clamped to ``max_retry_after``.
    (Shared by the uploader and ``gf-integrations upload``.)"""
    base: float = min(0.5 * 2.0 ** (attempt - 1), max_backoff)
    delay = base * (1 - 0.25 * random.random())
    if retry_after is not None:
        delay = max(delay, min(retry_after, max_retry_after))
    return delay


class UploaderBase:
    """State, sending, retries and spool; :class:`~.uploader.Uploader` adds the worker."""

    if TYPE_CHECKING:  # provided by Uploader

        def _ensure_thread(self) -> bool: ...

    def __init__(
        self,
        settings: DeliverySettings,
        exporter: Exporter,
        prepare: Prepare | None = None,
        *,
        shipper: Callable[[Callable[[Any, ExportResult], None]], Shipper] | None = None,
        resend_spool: bool = True,
    ) -> None:
        self.settings = settings
        self.exporter = exporter
        self.prepare = prepare or _parts_only
        self._shipper_factory = shipper or (
            lambda done: ThreadShipper(exporter, settings.max_concurrent_requests, done)
        )
        self.counters = Counters()
        self._spool = Spool(Path(settings.spool_dir)) if settings.spool_dir else None
        self._init_runtime()
        self._closed = False
        self._once = OnceLog()  # this uploader's warnings, each said once
        ref = weakref.WeakMethod(self._after_fork)
        os.register_at_fork(after_in_child=lambda: call_ref(ref))
        register(self)  # one shared, bounded exit flush (see state._shutdown_all_at_exit)
        if resend_spool and self._spool is not None and self._spool.has_files():
            # undelivered batches from an earlier run: resend them now, not on first use
            self._resending = True
            self._ensure_thread()

    # -- runtime state (recreated after fork) -------------------------------------------

    def _init_runtime(self) -> None:
        self._buf: collections.deque[Any] = collections.deque()
        self._wake = threading.Event()
        self._wake_armed = False  # a producer already set _wake for this drain
        self._linger_cut = threading.Event()
        self._lock = threading.Lock()  # guards the batch state below and the thread handle
        self._idle = threading.Condition(self._lock)
        self._map_lock = threading.Lock()  # prepare() runs on one thread at a time
        self._callers_map = False  # host threads prepare the backlog (Uploader._help)
        self._caller_mapped = 0  # items they prepared: the worker's sign of their progress
        self._caller_mapped_seen = -1  # what the worker saw when it left mapping to them
        self._mapping_here = threading.local()  # .active: this thread is preparing
        self._ready: collections.deque[Payload] = collections.deque()
        s = self.settings
        self._batches = Batcher(
            s.max_batch_messages, s.max_batch_bytes, self._ready.append, self._join_failed
        )
        self._waiting: list[tuple[float, int, Payload]] = []  # retry timers (heap)
        self._inflight: set[Payload] = set()
        self._busy_keys: set[Any] = set()  # keys with a request out or a retry waiting
        self._answers: collections.deque[tuple[Payload, ExportResult]] = collections.deque()
        self._seq = itertools.count()
        # Messages in batches, waiting or in flight (the bound producers check) is
        # _held_in - _held_out: each counter has one kind of writer, so no update is lost
        # between threads. _held_in changes under _map_lock only (whoever prepares or
        # closes batches), _held_out on the worker only.
        self._held_in = 0
        self._held_out = 0
        self._drained = 0  # items taken from the buffer (stats: queued)
        self._thread: threading.Thread | None = None
        self._shipper: Shipper | None = None
        self._urgent = 0  # >0 while a flush/shutdown wants batches sent now
        self._stopping = threading.Event()
        self._deadline: float | None = None  # shutdown deadline (monotonic)
        self._busy = False  # the worker is between taking work and accounting for it
        self._paused_until = 0.0  # server-wide pause
        self._probing = False  # after a pause: one request out until one succeeds
        self._server_failures = 0  # consecutive server-wide failures (pause backoff)
        self._resending = False  # spool files are being resent
        self._spool_files: Any = None  # iterator over claimed spool files
        self._spooled_earlier = False  # resend what this run spooled once the server is back
        self._failures = 0  # messages lost or spooled, for flush()'s verdict
        self._failures_reported = 0

    def _after_fork(self) -> None:
        # Replace (never acquire) every lock: another thread may have held one at fork time.
        shipper = self._shipper
        self._init_runtime()
        self.counters = Counters()
        if shipper is not None:
            with contextlib.suppress(Exception):
                shipper.reset_after_fork()
        reset = getattr(self.exporter, "reset_after_fork", None)
        if callable(reset):
            with contextlib.suppress(Exception):
                reset()

    @property
    def _held(self) -> int:
        return self._held_in - self._held_out

    def _join_failed(self, count: int, exc: Exception) -> None:
        self._held_in -= count  # the batcher runs under _map_lock
        self.counters.bump("failed_mapping", count)
        self._once.warn(
            f"join:{type(exc).__name__}",
            f"gf_integrations: could not build a request ({type(exc).__name__}); skipped",
        )

    # -- sending -----------------------------------------------------------------------------

    def _dispatch(self, now: float) -> None:
        """Ship ready payloads: due retries first, up to the concurrency limit."""
        while self._waiting and self._waiting[0][0] <= now:
            _, _, item = heapq.heappop(self._waiting)
            self._busy_keys.discard(item.key)
            self._ready.appendleft(item)
        if now < self._paused_until or not self._ready:
            return
        shipper = self._get_shipper()
        limit = 1 if self._probing else shipper.window
        if len(self._inflight) >= limit:
            return
        timeout = self.settings.request_timeout
        if self._deadline is not None:
            timeout = min(timeout, max(self._deadline - now, 0.05))
        skipped: list[Payload] = []
        jobs: list[tuple[Any, float]] = []
        while self._ready and len(self._inflight) < limit:
            item = self._ready.popleft()
            if item.key is not None and item.key in self._busy_keys:
                skipped.append(item)  # that conversation has a request out: keep order
                continue
            if item.key is not None:
                self._busy_keys.add(item.key)
            with self._lock:
                self._inflight.add(item)
            jobs.append((item, timeout))
        self._ready.extendleft(reversed(skipped))
        if jobs:
            shipper.ship(jobs)  # all at once: one pipe write for the sender process

    def _get_shipper(self) -> Shipper:
        if self._shipper is None:
            self._shipper = self._shipper_factory(self._on_answer)
        return self._shipper

    def _on_answer(self, item: Payload, result: ExportResult) -> None:
        """Called by the shipper, from any thread, once per request."""
        self._answers.append((item, result))
        self._wake.set()

    def _take_answers(self) -> None:
        while self._answers:
            item, result = self._answers.popleft()
            with self._lock:
                self._inflight.discard(item)
                handed_off = item.handed_off
            if handed_off:  # shutdown spooled it meanwhile
                if result.ok:
                    Spool.forget(item.spool_path)
                continue
            self._settle(item, result)

    def _settle(self, item: Payload, result: ExportResult) -> None:
        s = self.settings
        now = time.monotonic()
        if result.ok or not result.retryable:
            self._busy_keys.discard(item.key)
            self._held_out += item.count
            if result.ok:
                self.counters.bump("sent", item.count)
                self.counters.bump("batches_sent")
                Spool.forget(item.spool_path)
                self._server_failures = 0
                self._probing = False
                if self._spool is not None and item.spool_path is None and self._spooled_earlier:
                    self._spooled_earlier = False
                    self._resending = True  # the server is back: resend what was spooled
            else:
                self._fatal(item, result)
            return
        item.attempt += 1
        if item.attempt == 1:
            item.budget_end = now + s.retry_budget
        # no answer at all (refused, reset, timed out): the server, not this batch
        unreachable = result.status is None and result.detail.startswith(("connection", "timeout"))
        server_wide = unreachable or result.status in _SERVER_WIDE or result.retry_after is not None
        if server_wide:
            self._server_failures += 1
            delay = self._backoff(self._server_failures, result.retry_after)
        else:
            delay = self._backoff(item.attempt, result.retry_after)
        if unreachable and self._spool is None:
            # nothing answers: keep the batch in memory (bounded by max_queue_size)
            item.budget_end = max(item.budget_end, now + delay + 1)
        end = item.budget_end if self._deadline is None else min(item.budget_end, self._deadline)
        if now + delay > end:
            self._busy_keys.discard(item.key)
            self._give_up(item, result)
            return
        self._retry_later(item, delay, pause=server_wide)

    def _retry_later(self, item: Payload, delay: float, *, pause: bool) -> None:
        """Arm the batch's retry timer; ``pause``: the whole server said no, so nothing is
        sent until then, and then one probe request goes first."""
        now = time.monotonic()
        if pause:
            self._paused_until = max(self._paused_until, now + delay)
            self._probing = True
        self.counters.bump("retried")
        item.due = now + delay
        heapq.heappush(self._waiting, (item.due, next(self._seq), item))

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        s = self.settings
        return backoff_delay(attempt, retry_after, s.max_backoff, s.max_retry_after)

    def _fatal(self, item: Payload, result: ExportResult) -> None:
        self.counters.bump("dropped_fatal", item.count)
        with self._lock:
            self._failures += item.count
        Spool.forget(item.spool_path)
        log.error(
            "gf_integrations: Greenflash rejected a batch of %d message(s): HTTP %s %s",
            item.count,
            result.status,
            result.detail,
        )

    def _give_up(self, item: Payload, result: ExportResult | None) -> None:
        self._held_out += item.count
        with self._lock:
            self._failures += item.count
            if item.handed_off:
                return  # shutdown already spooled it
            item.handed_off = True
        if item.spool_path is not None:
            self._resending = False  # still down: leave the rest of the spool for later
            self._spool_files = None
        why = "shutdown deadline" if result is None else (result.status or result.detail)
        if self._spool_write(item):
            self._once.warn(
                "spooled",
                f"gf_integrations: Greenflash unreachable ({why}); batches are kept in "
                f"{self._spool.folder if self._spool else None} and resent on next start",
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
        if self._spool is None:
            return False
        fresh = item.spool_path is None
        try:
            item.spool_path = self._spool.keep(item.path, item.body, item.spool_path)
        except OSError as exc:
            self._once.warn(
                "spool_error", f"gf_integrations: could not write the spool ({type(exc).__name__})"
            )
            return False
        if fresh:
            self._spooled_earlier = True
            self.counters.bump("spooled", item.count)
        return True

    def _resend_spool(self) -> None:
        """Feed claimed spool files to the sender, a few at a time."""
        if not self._resending or self._spool is None or self._stopping.is_set():
            self._resending = False
            return
        if self._spool_files is None:
            self._spool_files = self._spool.resends()
        for _ in range(self.settings.max_concurrent_requests - len(self._ready)):
            try:
                claimed, path, body, count = next(self._spool_files)
            except StopIteration:
                self._spool_files = None
                self._resending = False
                return
            self.counters.bump("unspooled", count)
            self._held_out -= count  # held again (the worker's counter: no lock needed)
            # one spool file out at a time, oldest first: a conversation's batches keep
            # their order (a message must not arrive before its parent)
            self._ready.append(Payload(path, body, count, _SPOOL_KEY, spool_path=claimed))

    # -- misc ----------------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Delivery counters (queued, sent, retried, dropped, dropped_*, spooled, ...)."""
        snap = self.counters.as_dict()
        queue_size = len(self._buf)
        snap["queued"] = self._drained + queue_size
        snap["queue_size"] = queue_size
        snap["in_flight"] = len(self._inflight)
        snap["prepared_by_callers"] = self._caller_mapped
        return snap


def _parts_only(item: Any) -> Iterable[Part]:
    raise TypeError(f"no preparer for {type(item).__name__}")

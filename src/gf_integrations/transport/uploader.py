"""The background uploader: a bounded buffer, one worker that batches, concurrent sending.

Policy (docs/DESIGN.md section 6):

* ``submit`` never blocks and never raises: when the work held in memory (queued items
  plus messages in open, waiting and in-flight batches) reaches ``max_queue_size``, the
  newest item is dropped and counted (logged once). A submit is a deque append; the
  worker is woken at most once per drain, not once per item.
* The worker turns queued items into :class:`~.request.Part` s (``prepare``, composed by
  the client: the recorder maps, the wire encodes) and groups them per ``(path, key)``;
  a batch closes at the count or byte cap, or when its oldest part is ``flush_interval``
  old. Closed batches go to a :class:`~.shippers.Shipper`, up to
  ``max_concurrent_requests`` at once; one conversation has at most one request out, so
  its messages arrive in order.
* Retries (408/409/429/5xx, timeouts, connection errors) wait on per-batch timers, with
  capped, jittered exponential backoff bounded by ``retry_budget``: a batch waiting out
  its backoff never holds up the others. A server-wide signal (429, 503, no answer at
  all, any ``Retry-After``) pauses all sending; then one probe request goes out,
  and full concurrency resumes on its success. While the server is unreachable
  (connection errors, timeouts) and no ``spool_dir`` is set, batches wait in memory beyond their
  budget (bounded by ``max_queue_size``). Other 4xx drop the batch with one log line.
* ``flush(timeout)`` returns by its deadline. At exit a bounded flush runs; whatever is
  still undelivered (queued items, open, waiting and in-flight batches) goes to the spool
  directory (if set) and is resent on next start. Resending is safe: ids deduplicate.
* After ``os.fork()`` the child gets a fresh buffer, locks, counters, worker and shipper
  (lazily started); the parent's unsent work stays the parent's.
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import itertools
import logging
import math
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..core.settings import Settings
from .batcher import Batcher
from .exporters import Exporter, ExportResult
from .request import Part
from .shippers import Shipper, ThreadShipper
from .spool import Spool
from .state import Counters, Payload, call_ref, register

log = logging.getLogger("gf_integrations")

_MAX_DRAIN = 2_000  # items prepared per worker iteration before shipping what is ready
# After waking for new items the worker waits this long before draining, so a steady
# stream of calls wakes it at most ~50 times a second instead of once per call: every
# wake-up is a GIL hand-off that the host's thread pays for.
_LINGER = 0.02
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


class Uploader:
    """Owns the buffer, worker thread, batching, retries, flush, exit and fork handling.

    Args:
        settings: the client's settings (caps, timings, spool folder).
        exporter: where requests go when no ``shipper`` is given (in-process threads).
        prepare: turns a submitted item into parts (items that are already a
            :class:`~.request.Part` pass through).
        shipper: factory ``(on_done) -> Shipper``; default: threads over ``exporter``.
        resend_spool: False leaves an existing spool alone (a client that cannot send,
            e.g. no API key, must not turn spooled batches into 401 drops).
    """

    def __init__(
        self,
        settings: Settings,
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
        self._warned: set[str] = set()
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
        self._held = 0  # parts/messages the worker holds (producers read it: the bound)
        self._drained = 0  # items taken from the buffer (stats: queued)
        self._thread: threading.Thread | None = None
        self._shipper: Shipper | None = None
        self._urgent = 0  # >0 while a flush/shutdown wants batches sent now
        self._stopping = threading.Event()
        self._deadline: float | None = None  # shutdown deadline (monotonic)
        self._busy = False  # worker holds items it has not accounted for yet
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

    # -- producer side ---------------------------------------------------------------------

    def submit(self, item: Any) -> bool:
        """Queue one item (an event, or a :class:`Part`). Never blocks; False when dropped."""
        if self._closed:
            self.counters.bump("dropped_shutdown")
            return False
        if self._thread is None and not self._ensure_thread():
            self.counters.bump("dropped_shutdown")
            return False
        buf = self._buf
        if len(buf) + self._held >= self.settings.max_queue_size:
            self.counters.bump("dropped_queue_full")
            self._warn_once(
                "queue_full",
                "gf_integrations: upload queue full "
                f"({self.settings.max_queue_size} items held); dropping new events "
                "(counted in stats()['dropped_queue_full'])",
            )
            return False
        buf.append(item)
        if not self._wake_armed:  # wake the worker once per drain, not once per item
            self._wake_armed = True
            self._wake.set()
        return True

    def _ensure_thread(self) -> bool:
        with self._lock:
            if self._thread is not None:
                return True
            if self._closed:
                return False
            thread = threading.Thread(
                target=self._run, name="gf-integrations-uploader", daemon=True
            )
            try:
                thread.start()
            except RuntimeError:
                # interpreter shutting down: give up quietly, like sentry does
                return False
            self._thread = thread
            return True

    # -- flush / shutdown --------------------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """Send everything queued so far; True when all of it was delivered in time.

        Always returns by ``timeout``; never raises.
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        if threading.current_thread() is self._thread:
            return False  # called from the worker (a mask or lazy callable): cannot wait
        with self._lock:
            if self._is_idle():
                return self._verdict()
        if self._thread is None and not self._ensure_thread():
            return False
        with self._lock:
            self._urgent += 1
        self._linger_cut.set()
        self._wake.set()
        try:
            with self._idle:
                while not self._is_idle():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        log.info(
                            "gf_integrations: flush timed out with about %d message(s) pending",
                            len(self._buf) + self._held,
                        )
                        return False
                    self._idle.wait(min(remaining, 0.05))
                return self._verdict()
        finally:
            with self._lock:
                self._urgent -= 1

    def _verdict(self) -> bool:
        """True when nothing was lost or spooled since the previous flush (holds _lock)."""
        ok = self._failures == self._failures_reported
        self._failures_reported = self._failures
        return ok

    def _is_idle(self) -> bool:
        # caller holds _lock
        return not (
            self._buf
            or self._batches
            or self._ready
            or self._waiting
            or self._inflight
            or self._answers
            or self._busy
            or self._resending
        )

    def shutdown(self, timeout: float | None = None) -> None:
        """Flush within ``timeout`` (default ``shutdown_timeout``), spool the rest, stop.

        Idempotent and bounded: returns by the deadline even when the server hangs.
        Events submitted afterwards are dropped and counted.
        """
        budget = self.settings.shutdown_timeout if timeout is None else max(timeout, 0.0)
        deadline = time.monotonic() + budget
        if self._begin_shutdown(deadline):
            self._finish_shutdown(deadline)

    def _begin_shutdown(self, deadline: float, *, at_exit: bool = False) -> bool:
        """Stop accepting items and tell the worker to send everything now."""
        with self._lock:
            if self._closed:
                return False
            self._closed = True
            pending = len(self._buf) + self._held
        if at_exit and pending:
            log.info(
                "gf_integrations: sending %d pending message(s) before exit (up to %.1f s)",
                pending,
                max(deadline - time.monotonic(), 0.0),
            )
        self._deadline = deadline
        self._stopping.set()
        self._linger_cut.set()
        self._wake.set()
        return True

    def _finish_shutdown(self, deadline: float) -> None:
        """Wait for the worker until ``deadline``, then spool whatever is left."""
        thread = self._thread
        alive = (
            thread is not None and thread.is_alive() and thread is not threading.current_thread()
        )
        if alive:
            assert thread is not None
            thread.join(max(deadline - time.monotonic(), 0.0))
            alive = thread.is_alive()
        self._spool_leftovers(worker_alive=alive, deadline=deadline)
        shipper = self._shipper
        if shipper is not None:
            with contextlib.suppress(Exception):
                shipper.close()
        answered = {item for item, _ in list(self._answers)}
        if not self._inflight - answered:
            # never close the pool under a request that is still running
            with contextlib.suppress(Exception):
                self.exporter.shutdown()

    # -- worker ------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            with contextlib.suppress(Exception):
                self._get_shipper().start()  # a sender process starts while we batch
            while True:
                try:
                    if self._step():
                        break
                except Exception as exc:  # keep the worker alive whatever happens
                    self._warn_once(
                        f"worker:{type(exc).__name__}",
                        f"gf_integrations: uploader error ({type(exc).__name__}); continuing",
                    )
        finally:
            with self._lock:
                self._busy = False
                if self._thread is threading.current_thread():
                    self._thread = None  # a dying worker is restarted by the next submit
                self._idle.notify_all()

    def _step(self) -> bool:
        """One worker iteration; True when the worker should exit."""
        woke = self._wake.wait(self._next_due())
        self._wake.clear()
        self._wake_armed = False
        stopping = self._stopping.is_set()
        if woke and self._buf and not self._urgent and not stopping:
            self._linger_cut.wait(_LINGER)  # flush() and shutdown() cut it short
            self._linger_cut.clear()
        self._busy = True
        self._drain()
        self._take_answers()
        now = time.monotonic()
        caught_up = not self._buf or self._past_deadline()
        # A flush/shutdown sends partial batches only once the backlog is prepared: until
        # then they can still fill up (fewer, fuller POSTs). The deadline still bounds it.
        if (stopping or self._urgent > 0) and caught_up:
            self._batches.close_older(math.inf)
        else:
            # While a backlog waits in the buffer, open batches get a little longer to
            # fill up (bounded: 4 intervals): under load, fewer and fuller POSTs.
            age = self.settings.flush_interval * (4 if self._buf else 1)
            self._batches.close_older(now - age)
        self._resend_spool()
        self._dispatch(now)
        with self._lock:
            self._busy = False
            if self._is_idle():
                self._idle.notify_all()
            done = not (self._buf or self._batches or self._ready or self._waiting)
        if self._buf:
            self._wake.set()  # more than one drain's worth is waiting
        if stopping:
            return (done and not self._inflight) or self._past_deadline()
        return False

    def _drain(self) -> None:
        buf = self._buf
        n = min(len(buf), _MAX_DRAIN)
        if not n:
            return
        items = [buf.popleft() for _ in range(n)]
        self._drained += n
        self._held += n  # until prepared: counted against the bound all along
        with self._map_lock:
            for item in items:
                self._prepare(item)
        self._held -= n

    def _prepare(self, item: Any) -> None:
        """Turn one item into batched parts (caller holds ``_map_lock``). Never raises."""
        try:
            parts = [item] if isinstance(item, Part) else self.prepare(item)
        except BaseException as exc:  # a lazy callable's SystemExit must not kill the worker
            self.counters.bump("failed_mapping")
            with self._lock:
                self._failures += 1  # flush() promises delivery: a lost item is a failure
            self._warn_once(
                f"map:{type(exc).__name__}",
                f"gf_integrations: could not map a {type(item).__name__} event "
                f"({type(exc).__name__}: {str(exc)[:200]}); it was skipped",
            )
            return
        for part in parts:
            self._add(part)

    def _add(self, part: Part) -> None:
        self._held += part.count
        self._batches.add(part)

    def _join_failed(self, count: int, exc: Exception) -> None:
        self._held -= count
        self.counters.bump("failed_mapping", count)
        self._warn_once(
            f"join:{type(exc).__name__}",
            f"gf_integrations: could not build a request ({type(exc).__name__}); skipped",
        )

    def _next_due(self) -> float:
        if self._urgent > 0 or self._stopping.is_set():
            return 0.01
        if self._buf or self._answers:
            return 0.0
        now = time.monotonic()
        due = now + self.settings.flush_interval
        oldest = self._batches.oldest()
        if oldest is not None:
            due = min(due, oldest + self.settings.flush_interval)
        if self._waiting:
            due = min(due, self._waiting[0][0])
        if self._ready:  # paused, at the concurrency limit, or behind a busy conversation
            due = min(due, self._paused_until if self._paused_until > now else now + 0.05)
        return max(0.0, due - now)

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

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
            self._held -= item.count
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
        self._held -= item.count
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
            self._warn_once(
                "spooled",
                f"gf_integrations: Greenflash unreachable ({why}); batches are kept in "
                f"{self._spool.folder if self._spool else None} and resent on next start",
            )
        else:
            self.counters.bump("dropped_retries", item.count)
            self._warn_once(
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
            self._warn_once(
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
            self._held += count
            # one spool file out at a time, oldest first: a conversation's batches keep
            # their order (a message must not arrive before its parent)
            self._ready.append(Payload(path, body, count, _SPOOL_KEY, spool_path=claimed))

    def _spool_leftovers(self, *, worker_alive: bool, deadline: float) -> None:
        """After shutdown's join: spool queued items and every batch not yet delivered."""
        items: list[Any] = []
        while self._buf:
            items.append(self._buf.popleft())
        if items:
            # prepare() is free unless the worker is stuck inside it (a hung lazy
            # callable); a worker waiting on the network does not hold it.
            wait = max(deadline - time.monotonic(), 0.2) if worker_alive else -1
            if self._map_lock.acquire(timeout=wait):
                try:
                    self._drained += len(items)
                    for item in items:
                        self._prepare(item)
                finally:
                    self._map_lock.release()
            else:
                self.counters.bump("dropped_shutdown", len(items))
        self._batches.close_older(math.inf)
        with self._lock:
            leftovers = list(self._ready) + [w[2] for w in self._waiting]
            self._ready.clear()
            self._waiting.clear()
            # The batch a hung request holds is spooled too; if that request lands after
            # all, its answer deletes the spool file (and a resend would be deduplicated).
            leftovers += [p for p in self._inflight if not p.handed_off]
            for p in leftovers:
                p.handed_off = True
            self._idle.notify_all()
        lost = 0
        for item in leftovers:
            if not self._spool_write(item):
                lost += item.count
        if lost:
            self.counters.bump("dropped_shutdown", lost)
            log.warning(
                "gf_integrations: %d message(s) could not be delivered before exit%s",
                lost,
                "" if self._spool else " (set spool_dir to keep them)",
            )

    # -- misc ----------------------------------------------------------------------------------

    def _warn_once(self, key: str, message: str) -> None:
        if key in self._warned:
            return
        self._warned.add(key)
        log.warning(message)

    def stats(self) -> dict[str, int]:
        """Delivery counters (queued, sent, retried, dropped, dropped_*, spooled, ...)."""
        snap = self.counters.as_dict()
        queue_size = len(self._buf)
        snap["queued"] = self._drained + queue_size
        snap["queue_size"] = queue_size
        snap["in_flight"] = len(self._inflight)
        return snap


def _parts_only(item: Any) -> Iterable[Part]:
    raise TypeError(f"no preparer for {type(item).__name__}")

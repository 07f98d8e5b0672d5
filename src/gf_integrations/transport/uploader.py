"""The background uploader: a bounded buffer, one worker that batches, concurrent sending.

Policy (DESIGN.md section 5):

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
  its backoff never holds up the others. A server-wide signal (429, 503, a refused
  connection, any ``Retry-After``) pauses all sending; then one probe request goes out,
  and full concurrency resumes on its success. While the server is unreachable
  (connection errors) and no ``spool_dir`` is set, batches wait in memory beyond their
  budget (bounded by ``max_queue_size``). Other 4xx drop the batch with one log line.
* ``flush(timeout)`` returns by its deadline. At exit a bounded flush runs; whatever is
  still undelivered (queued items, open, waiting and in-flight batches) goes to the spool
  directory (if set) and is resent on next start. Resending is safe: ids deduplicate.
* After ``os.fork()`` the child gets a fresh buffer, locks, counters, worker and shipper
  (lazily started); the parent's unsent work stays the parent's.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import dataclasses
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
from typing import Any

import orjson

from ..core.settings import Settings
from .exporters import Exporter, ExportResult
from .request import Part
from .shippers import Shipper, ThreadShipper
from .spool import Spool, path_of

log = logging.getLogger("gf_integrations")

_MAX_DRAIN = 2_000  # items prepared per worker iteration before shipping what is ready
# After waking for new items the worker waits this long before draining, so a steady
# stream of calls wakes it at most ~50 times a second instead of once per call: every
# wake-up is a GIL hand-off that the host's thread pays for.
_LINGER = 0.02
_SERVER_WIDE = frozenset({429, 503})

Prepare = Callable[[Any], Iterable[Part]]


@dataclasses.dataclass(slots=True)
class _Batch:
    parts: list[Part]
    size: int  # bytes of the parts plus separating commas
    overhead: int  # bytes the body adds around the parts
    opened: float


@dataclasses.dataclass(slots=True, eq=False)
class _Payload:
    path: str
    body: bytes
    count: int
    key: Any = None  # (path, key) of the batch: one request out per key at a time
    spool_path: Path | None = None
    attempt: int = 0
    budget_end: float = 0.0  # when retries stop (set on the first failure)
    due: float = 0.0
    # Set (under the lock) when shutdown took this payload over and spooled it: a late
    # answer then only deletes the spool file.
    handed_off: bool = False


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
        os.register_at_fork(after_in_child=lambda: _call_ref(ref))
        with _live_lock[0]:
            _live.add(self)  # one shared, bounded exit flush (see _shutdown_all_at_exit)
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
        self._pending: collections.OrderedDict[Any, _Batch] = collections.OrderedDict()
        self._ready: collections.deque[_Payload] = collections.deque()
        self._waiting: list[tuple[float, int, _Payload]] = []  # retry timers (heap)
        self._inflight: set[_Payload] = set()
        self._busy_keys: set[Any] = set()  # keys with a request out or a retry waiting
        self._answers: collections.deque[tuple[_Payload, ExportResult]] = collections.deque()
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
            or self._pending
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
        self._close_due(now, force=(stopping or self._urgent > 0) and caught_up)
        self._resend_spool()
        self._dispatch(now)
        with self._lock:
            self._busy = False
            if self._is_idle():
                self._idle.notify_all()
            done = not (self._buf or self._pending or self._ready or self._waiting)
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
        s = self.settings
        self._held += part.count
        if part.join is None:
            # a whole body; a key names the batch it must follow: that batch closes now
            # (so it is ahead in line) and the two are never out at the same time
            if part.key is not None and part.key in self._pending:
                self._close(part.key)
            self._ready.append(_Payload(part.path, part.data, part.count, part.key))
            return
        if part.key is None:
            self._ready.append(_Payload(part.path, part.data, part.count))
            return
        key = (part.path, part.key)
        extra = len(part.data) + 1
        batch = self._pending.get(key)
        if (
            batch is not None
            and max(batch.overhead, part.overhead) + batch.size + extra > s.max_batch_bytes
        ):
            self._close(key)  # the byte cap: close this batch, start a new one for the part
            batch = None
        if batch is None:
            batch = self._pending[key] = _Batch([], 0, part.overhead, time.monotonic())
        batch.parts.append(part)
        batch.size += extra
        batch.overhead = max(batch.overhead, part.overhead)
        if len(batch.parts) >= s.max_batch_messages:
            self._close(key)

    def _close(self, key: Any) -> None:
        batch = self._pending.pop(key)
        parts = batch.parts
        join = parts[0].join
        assert join is not None
        count = sum(p.count for p in parts)
        try:
            body = join(parts)
        except Exception as exc:
            self._held -= count
            self.counters.bump("failed_mapping", count)
            self._warn_once(
                f"join:{type(exc).__name__}",
                f"gf_integrations: could not build a request ({type(exc).__name__}); skipped",
            )
            return
        self._ready.append(_Payload(parts[0].path, body, count, key))

    def _close_due(self, now: float, *, force: bool) -> None:
        # While a backlog waits in the buffer, open batches get a little longer to fill up
        # (bounded: 4 intervals): under load that means fewer, fuller POSTs.
        age = self.settings.flush_interval * (4 if self._buf else 1)
        for key in [k for k, b in self._pending.items() if force or now - b.opened >= age]:
            self._close(key)

    def _next_due(self) -> float:
        if self._urgent > 0 or self._stopping.is_set():
            return 0.01
        if self._buf or self._answers:
            return 0.0
        now = time.monotonic()
        due = now + self.settings.flush_interval
        if self._pending:
            due = min(due, next(iter(self._pending.values())).opened + self.settings.flush_interval)
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
        limit = 1 if self._probing else self.settings.max_concurrent_requests
        if len(self._inflight) >= limit:
            return
        shipper = self._get_shipper()
        skipped: list[_Payload] = []
        while self._ready and len(self._inflight) < limit:
            item = self._ready.popleft()
            if item.key is not None and item.key in self._busy_keys:
                skipped.append(item)  # that conversation has a request out: keep order
                continue
            if item.key is not None:
                self._busy_keys.add(item.key)
            timeout = self.settings.request_timeout
            if self._deadline is not None:
                timeout = min(timeout, max(self._deadline - now, 0.05))
            with self._lock:
                self._inflight.add(item)
            shipper.ship(item, timeout)
        self._ready.extendleft(reversed(skipped))

    def _get_shipper(self) -> Shipper:
        if self._shipper is None:
            self._shipper = self._shipper_factory(self._on_answer)
        return self._shipper

    def _on_answer(self, item: _Payload, result: ExportResult) -> None:
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
                    self._forget_spool(item)
                continue
            self._settle(item, result)

    def _settle(self, item: _Payload, result: ExportResult) -> None:
        s = self.settings
        now = time.monotonic()
        if result.ok or not result.retryable:
            self._busy_keys.discard(item.key)
            self._held -= item.count
            if result.ok:
                self.counters.bump("sent", item.count)
                self.counters.bump("batches_sent")
                self._forget_spool(item)
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
        unreachable = result.status is None and result.detail.startswith("connection")
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

    def _retry_later(self, item: _Payload, delay: float, *, pause: bool) -> None:
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
        """Capped, jittered exponential backoff; ``Retry-After`` acts as a clamped minimum."""
        s = self.settings
        base: float = min(0.5 * 2.0 ** (attempt - 1), s.max_backoff)
        delay = base * (1 - 0.25 * random.random())
        if retry_after is not None:
            delay = max(delay, min(retry_after, s.max_retry_after))
        return delay

    def _fatal(self, item: _Payload, result: ExportResult) -> None:
        self.counters.bump("dropped_fatal", item.count)
        with self._lock:
            self._failures += item.count
        self._forget_spool(item)
        log.error(
            "gf_integrations: Greenflash rejected a batch of %d message(s): HTTP %s %s",
            item.count,
            result.status,
            result.detail,
        )

    def _give_up(self, item: _Payload, result: ExportResult | None) -> None:
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

    def _spool_write(self, item: _Payload) -> bool:
        if self._spool is None:
            return False
        if item.spool_path is not None:
            # a resend from the spool that failed again: put the file back for next time
            try:
                item.spool_path = Spool.unclaim(item.spool_path)
                return True
            except OSError:
                pass  # already gone (delivered meanwhile): write it again below
        try:
            item.spool_path = self._spool.write(item.path, item.body)
        except OSError as exc:
            self._warn_once(
                "spool_error", f"gf_integrations: could not write the spool ({type(exc).__name__})"
            )
            return False
        self._spooled_earlier = True
        self.counters.bump("spooled", item.count)
        return True

    def _forget_spool(self, item: _Payload) -> None:
        if item.spool_path is not None:
            with contextlib.suppress(OSError):
                item.spool_path.unlink()

    def _resend_spool(self) -> None:
        """Feed claimed spool files to the sender, a few at a time."""
        if not self._resending or self._spool is None or self._stopping.is_set():
            self._resending = False
            return
        if self._spool_files is None:
            self._spool_files = self._spool.claim()
        room = self.settings.max_concurrent_requests - len(self._ready) - len(self._inflight)
        while room > 0:
            try:
                claimed, body = next(self._spool_files)
            except StopIteration:
                self._spool_files = None
                self._resending = False
                return
            path = path_of(claimed)
            count = 1
            if path == "/messages":
                try:
                    count = len(orjson.loads(body).get("messages", []))
                except (ValueError, AttributeError):
                    continue
            self.counters.bump("unspooled", count)
            self._held += count
            self._ready.append(_Payload(path, body, count, spool_path=claimed))
            room -= 1

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
        for key in list(self._pending):
            self._close(key)
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


# Every live uploader, so that exit makes ONE bounded pass over all of them: they stop
# together and share the longest shutdown budget instead of waiting one after another.
_live: weakref.WeakSet[Uploader] = weakref.WeakSet()
_live_lock = [threading.Lock()]  # a list so the fork hook can replace it


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


def _reinit_live_lock() -> None:
    _live_lock[0] = threading.Lock()


atexit.register(_shutdown_all_at_exit)
os.register_at_fork(after_in_child=_reinit_live_lock)


def _call_ref(ref: weakref.WeakMethod[Any]) -> None:
    method = ref()
    if method is not None:
        method()

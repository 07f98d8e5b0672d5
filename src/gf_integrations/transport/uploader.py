"""The background uploader: a bounded buffer, one worker that batches, concurrent sending.

Policy (docs/DESIGN.md section 6):

* ``submit`` never blocks and never raises: when the work held in memory (queued items
  plus messages in open, waiting and in-flight batches) reaches ``max_queue_size``, the
  newest item is dropped and counted (logged once). A submit is a deque append; the
  worker is woken at most once per drain, not once per item.
* Items are prepared in order, one at a time under ``_map_lock``, normally by the worker.
  A host thread that keeps releasing the GIL for a moment (a syscall per call, an event
  loop's poll) starves every background thread: it takes the GIL back before a waiting
  thread wakes up. When ``_HELP_AT`` items are queued the submitting thread therefore
  prepares two items per submit itself (its own and one of the backlog), and the worker
  leaves mapping to the callers while they make progress, like a garbage collector's
  allocation assist: the host pays for what it produces only when the worker cannot.
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

import contextlib
import math
import threading
import time
from typing import Any

from .request import Part
from .uploader_base import UploaderBase, log
from .uploader_base import backoff_delay as backoff_delay

_MAX_DRAIN = 2_000  # items prepared per worker iteration before shipping what is ready
# After waking for new items the worker waits this long before draining, so a steady
# stream of calls wakes it at most ~50 times a second instead of once per call: every
# wake-up is a GIL hand-off that the host's thread pays for.
_LINGER = 0.02
# Queued items at which a submitting thread starts preparing items itself (see _help): far
# above what a worker that gets the GIL leaves queued (a linger's worth of calls).
_HELP_AT = 512
_HELP_PER_SUBMIT = 2  # more than one, so a backlog shrinks while the host keeps producing


class _SpoolRequest:
    """One :meth:`Uploader.spool_pending` call, served by the worker."""

    __slots__ = ("done", "spooled")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.spooled = 0


class Uploader(UploaderBase):
    """Owns the buffer, worker thread, batching, retries, flush, exit and fork handling.

    Args:
        settings: caps, timings and the spool folder.
        exporter: where requests go when no ``shipper`` is given (in-process threads).
        prepare: turns a submitted item into parts (items that are already a
            :class:`~.request.Part` pass through).
        shipper: factory ``(on_done) -> Shipper``; default: threads over ``exporter``.
        resend_spool: False leaves an existing spool alone (a client that cannot send,
            e.g. no API key, must not turn spooled batches into 401 drops).
    """

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
            self._once.warn(
                "queue_full",
                "gf_integrations: upload queue full "
                f"({self.settings.max_queue_size} items held); dropping new events "
                "(counted in stats()['dropped_queue_full'])",
            )
            return False
        buf.append(item)
        if len(buf) >= _HELP_AT or self._callers_map:
            self._help()
        if not self._wake_armed:  # wake the worker once per drain, not once per item
            self._wake_armed = True
            self._wake.set()
        return True

    def _help(self) -> None:
        """Prepare a few queued items on the submitting thread. Never blocks.

        Only a thread that gets ``_map_lock`` at once helps; one that does not asks the
        worker to hand over after its current item (``_callers_map``).
        """
        self._callers_map = True
        if not self._map_lock.acquire(blocking=False):
            return
        self._mapping_here.active = True  # flush() from a mask called here must not wait
        try:
            for _ in range(_HELP_PER_SUBMIT):
                if not self._prepare_next():
                    break
                self._caller_mapped += 1
            # close what is due here too: the worker may not get the GIL to do it
            self._batches.close_older(time.monotonic() - self.settings.flush_interval)
            if not self._buf:
                self._callers_map = False  # caught up: the worker takes over again
        except Exception as exc:  # never into the host's call; the worker takes over
            self._callers_map = False
            self._once.warn(
                f"help:{type(exc).__name__}",
                f"gf_integrations: uploader error ({type(exc).__name__}); continuing",
            )
        finally:
            self._mapping_here.active = False
            self._map_lock.release()

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
        if threading.current_thread() is self._thread or self._mapping_here_active():
            return False  # called while preparing (a mask or lazy callable): cannot wait
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
            or self._map_lock.locked()  # a host thread is preparing an item it took
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

    # -- a process about to be frozen (serverless platforms, docs/DESIGN.md section 6b) ------

    def _init_runtime(self) -> None:
        super()._init_runtime()
        self._spool_requests: list[_SpoolRequest] = []  # spool_pending() calls, for the worker

    def spool_pending(self, timeout: float = 0.1) -> int:
        """Write everything not yet delivered to the spool now, and keep running.

        For a process that is about to be frozen with work still pending (a serverless
        invocation at its deadline). The worker prepares what is queued, closes the open
        batches and writes every batch that is ready, waiting for a retry or in flight to
        the spool; a request still in flight that is answered later only deletes its file.
        Spooled work is resent by :meth:`resend_spool` (or after the next delivery), and
        counted in ``stats()["spooled"]``. Returns the number of messages spooled: 0 without
        a spool (the work then stays in memory, nothing is dropped) or when the worker did
        not get to it within ``timeout`` (the request is then withdrawn). Never raises.
        """
        if self._spool is None or self._closed:
            return 0
        if threading.current_thread() is self._thread or self._mapping_here_active():
            return 0
        with self._lock:
            if self._is_idle():
                return 0
        if self._thread is None and not self._ensure_thread():
            return 0
        request = _SpoolRequest()
        with self._lock:
            self._spool_requests.append(request)
        self._linger_cut.set()
        self._wake.set()
        if not request.done.wait(max(timeout, 0.0)):
            with self._lock:
                if request in self._spool_requests:
                    self._spool_requests.remove(request)  # never spool a later invocation's
        return request.spooled

    def resend_spool(self) -> bool:
        """Start resending what the spool holds, now (a frozen process was thawed: a new
        serverless invocation began). The worker resends it; ``flush`` waits for it. False
        when there is no spool or nothing in it. Never raises."""
        if self._spool is None or self._closed:
            return False
        if self._resending:
            return True
        if not self._spool.has_files():
            return False
        self._resending = True
        if self._thread is None and not self._ensure_thread():
            return False
        self._wake.set()
        return True

    def _serve_spool_requests(self) -> None:
        """On the worker: hand every undelivered batch to the spool (see spool_pending)."""
        with self._lock:
            requests, self._spool_requests = self._spool_requests, []
        if not requests:
            return
        with self._map_lock:
            while self._prepare_next():
                pass
            self._batches.close_older(math.inf)
        # what is spooled now waits for the next resend_spool(), not for this resend
        self._resending = False
        self._spool_files = None
        with self._lock:
            flying = [p for p in self._inflight if not p.handed_off]
        # oldest first (the spool is resent in file order): a conversation's request in
        # flight or waiting to retry comes before its batches that are ready
        held = [entry[2] for entry in sorted(self._waiting)] + list(self._ready)
        self._waiting.clear()
        self._ready.clear()
        spooled = 0
        for item in flying + held:
            if not self._spool_write(item):
                if not any(item is f for f in flying):
                    self._ready.append(item)  # the spool failed: it stays in memory
                continue
            with self._lock:
                item.handed_off = True
                self._inflight.discard(item)
            self._busy_keys.discard(item.key)
            self._held_out += item.count
            spooled += item.count
        for request in requests:
            request.spooled = spooled
            request.done.set()

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
                    self._once.warn(
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
            opened_before = math.inf
        else:
            # While a backlog waits for this thread, open batches get a little longer to
            # fill up (bounded: 4 intervals): under load, fewer and fuller POSTs.
            backlog = self._buf and not self._callers_map
            opened_before = now - self.settings.flush_interval * (4 if backlog else 1)
        with self._map_lock:  # host threads add to the batches when they prepare
            self._batches.close_older(opened_before)
        if self._spool_requests:
            self._serve_spool_requests()
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
        """Prepare queued items in order, one at a time under ``_map_lock``."""
        if self._callers_map:
            # The host's threads asked to prepare: this thread is starved. Leave it to them
            # while they make progress (the first time, give them the chance to start),
            # but not while a flush or shutdown waits.
            urgent = self._urgent > 0 or self._stopping.is_set()
            if not urgent and self._caller_mapped != self._caller_mapped_seen:
                self._caller_mapped_seen = self._caller_mapped
                return
            self._callers_map = False  # they stopped submitting: take over
            self._caller_mapped_seen = -1
        for _ in range(_MAX_DRAIN):
            if self._callers_map:
                return
            with self._map_lock:
                if not self._prepare_next():
                    return

    def _prepare_next(self) -> bool:
        """Take the oldest queued item and prepare it (caller holds ``_map_lock``);
        False when the queue is empty."""
        try:
            item = self._buf.popleft()
        except IndexError:
            return False
        self._drained += 1
        self._prepare(item)
        return True

    def _prepare(self, item: Any) -> None:
        """Turn one item into parts and batch them (caller holds ``_map_lock``).

        Never raises, except a KeyboardInterrupt on a host thread (that is the user's).
        """
        try:
            parts = [item] if isinstance(item, Part) else self.prepare(item)
        except BaseException as exc:  # a lazy callable's SystemExit must not kill the worker
            self.counters.bump("failed_mapping")
            with self._lock:
                self._failures += 1  # flush() promises delivery: a lost item is a failure
            self._once.warn(
                f"map:{type(exc).__name__}",
                f"gf_integrations: could not map a {type(item).__name__} event "
                f"({type(exc).__name__}); it was skipped",
            )
            if isinstance(exc, KeyboardInterrupt) and self._mapping_here_active():
                raise
            return
        for part in parts:
            self._held_in += part.count
            self._batches.add(part)

    def _mapping_here_active(self) -> bool:
        return bool(getattr(self._mapping_here, "active", False))

    def _next_due(self) -> float:
        if self._urgent > 0 or self._stopping.is_set():
            return 0.01
        if self._buf or self._answers:
            return 0.0
        now = time.monotonic()
        due = now + self.settings.flush_interval
        with self._map_lock:
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

    def _spool_leftovers(self, *, worker_alive: bool, deadline: float) -> None:
        """After shutdown's join: spool queued items and every batch not yet delivered."""
        items: list[Any] = []
        while self._buf:
            items.append(self._buf.popleft())
        # prepare() is free unless the worker is stuck inside it (a hung lazy callable);
        # a worker waiting on the network does not hold it.
        wait = max(deadline - time.monotonic(), 0.2) if worker_alive else -1
        if self._map_lock.acquire(timeout=wait):
            try:
                self._drained += len(items)
                for item in items:
                    self._prepare(item)
                self._batches.close_older(math.inf)
            finally:
                self._map_lock.release()
        else:
            self.counters.bump("dropped_shutdown", len(items))
            self._batches.close_older(math.inf)  # the one holding it is stuck
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

"""The background uploader, composed of a worker, a pipeline gate and a delivery.

Policy (docs/DESIGN.md sections 3 and 6):

* ``submit`` never blocks and never raises: when the work held in memory (queued items
  plus messages in open, waiting and in-flight batches) reaches ``max_queue_size``, the
  newest item is dropped and counted (logged once).
* A :class:`~.worker.Worker` thread takes turns: it prepares queued items in order
  (``prepare``, composed by the client: the recorder maps, the wire encodes), takes the
  answers that came back, closes due batches and ships what is ready. All of that happens
  under the :class:`~.gate.PipelineGate`'s lock; when the worker is starved of the GIL,
  the submitting threads take short turns instead (the allocation assist).
* The :class:`~.delivery.Delivery` owns batches, requests out, retries (a pure
  :class:`~.retry.RetryPolicy`) and the spool.
* ``flush(timeout)`` returns by its deadline. At exit a bounded flush runs; whatever is
  still undelivered goes to the spool directory (if set) and is resent on next start.
* After ``os.fork()`` the child gets fresh components (one fork hook for the module);
  the parent's unsent work stays the parent's.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..common.once import OnceLog
from . import shippers as _shippers
from . import state as _state
from .delivery import Delivery, DeliverySettings, log
from .exporters import Exporter, ExportResult
from .gate import PipelineGate
from .request import Part
from .retry import backoff_delay as backoff_delay
from .shippers import Shipper, ThreadShipper
from .spool import Spool
from .state import Counters
from .worker import LINGER, Worker

Prepare = Callable[[Any], Iterable[Part]]

_MAX_DRAIN = 2_000  # items the worker prepares per turn before shipping what is ready
# Queued items at which the submitting threads start taking turns: far above what a worker
# that gets the GIL leaves queued (a linger's worth of calls), well below the queue bound.
_ASSIST_AT = 512
_HOST_TURN_ITEMS = 2  # more than one, so a backlog shrinks while the host keeps producing


class Uploader:
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
        self._spool = Spool(Path(settings.spool_dir)) if settings.spool_dir else None
        self._once = OnceLog()  # this uploader's warnings, each said once
        self._closed = False
        self._build()
        _state.register(self)  # one bounded exit pass, one fork hook (see state)
        if resend_spool and self._spool is not None and self._spool.has_files():
            # undelivered batches from an earlier run: resend them now, not on first use
            self.delivery.resending = True
            self.worker.start()

    def _build(self) -> None:
        """The components and their runtime state (built again in a forked child)."""
        self.counters = Counters()
        self.worker = Worker(self._turn, self._next_wait, self._start_shipper, self._once)
        bound = self.settings.max_queue_size
        self.gate = PipelineGate(assist_at=min(_ASSIST_AT, bound // 4), held_at=bound // 2)
        self.delivery = Delivery(
            self.settings,
            self.counters,
            self._shipper_factory,
            self._spool,
            self._once,
            self.worker.wake,
        )
        self._drained = 0  # items taken from the buffer (stats: queued)
        self._host_io_due = 0.0  # when a host turn may next ship and read answers
        self._failures_reported = 0
        self._mapping_failures = 0

    def _after_fork(self) -> None:
        # Replace (never acquire) every lock: another thread may have held one at fork time.
        self._build()
        reset = getattr(self.exporter, "reset_after_fork", None)
        if callable(reset):
            with contextlib.suppress(Exception):
                reset()

    # -- producer side ---------------------------------------------------------------------

    def submit(self, item: Any) -> bool:
        """Queue one item (an event, or a :class:`Part`). Never blocks; False when dropped."""
        if self._closed or (self.worker.thread is None and not self.worker.start()):
            self.counters.bump("dropped_shutdown")
            return False
        buf = self.worker.buf
        if len(buf) + self.delivery.held >= self.settings.max_queue_size:
            self.counters.bump("dropped_queue_full")
            self._once.warn(
                "queue_full",
                "gf_integrations: upload queue full "
                f"({self.settings.max_queue_size} items held); dropping new events "
                "(counted in stats()['dropped_queue_full'])",
            )
            return False
        self.worker.push(item)
        if self.gate.host_turn(len(buf), self.delivery.held):
            self._host_turn()
        return True

    def _host_turn(self) -> None:
        """A starved worker's work, a little of it, on the submitting thread (holding the
        gate): prepare two items; at most every ``LINGER``, take the answers in, close due
        batches and ship what is ready. Never waits on the network: a shipper only queues
        (threads) or writes to a pipe (the sender process)."""
        prepared = 0
        jobs: list[tuple[Any, float]] = []
        io = False
        delivery = self.delivery
        try:
            try:
                for _ in range(_HOST_TURN_ITEMS):
                    if not self._prepare_next():
                        break
                    prepared += 1
                now = time.monotonic()
                # the pipe's syscalls (ship, poll) at the worker's cadence, not per call:
                # each hands the GIL around
                io = now >= self._host_io_due
                if io:
                    self._host_io_due = now + LINGER
                    delivery.take_answers()
                    delivery.close_due(self._close_before(now, self.settings.flush_interval))
                    jobs = delivery.take_jobs(now)
            finally:
                self.gate.end_host_turn(prepared)
            if io:
                delivery.ship(jobs)
                delivery.poll()  # in by the next turn: syscalls only outside the gate
        except Exception as exc:  # never into the host's call; the worker takes over
            self._once.warn(
                f"help:{type(exc).__name__}",
                f"gf_integrations: uploader error ({type(exc).__name__}); continuing",
            )

    # -- flush / shutdown --------------------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """Send everything queued so far; True when all of it was delivered in time.

        Always returns by ``timeout``; never raises.
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        worker = self.worker
        if worker.on_thread() or self.gate.preparing_here():
            return False  # called while preparing (a mask or lazy callable): cannot wait
        if self._is_idle():
            with worker.lock:
                return self._verdict()
        if worker.thread is None and not worker.start():
            return False
        with worker.lock:
            worker.urgent += 1
        worker.hurry()
        try:
            with worker.idle:
                while not self._is_idle():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        log.info(
                            "gf_integrations: flush timed out with about %d message(s) pending",
                            len(worker.buf) + self.delivery.held,
                        )
                        return False
                    worker.idle.wait(min(remaining, 0.05))
                return self._verdict()
        finally:
            with worker.lock:
                worker.urgent -= 1

    def _verdict(self) -> bool:
        """True when nothing was lost or spooled since the previous flush."""
        failures = self.delivery.failures + self._mapping_failures
        ok = failures == self._failures_reported
        self._failures_reported = failures
        return ok

    def _is_idle(self) -> bool:
        # Under the gate, every item is in the buffer or in the delivery: a free gate and
        # both empty means nothing is on its way. A busy gate is not idle.
        if not self.gate.lock.acquire(blocking=False):
            return False
        try:
            return not self.worker.buf and self.delivery.idle()
        finally:
            self.gate.lock.release()

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
        with self.worker.lock:
            if self._closed:
                return False
            self._closed = True
            pending = len(self.worker.buf) + self.delivery.held
        if at_exit and pending:
            log.info(
                "gf_integrations: sending %d pending message(s) before exit (up to %.1f s)",
                pending,
                max(deadline - time.monotonic(), 0.0),
            )
        self.delivery.deadline = deadline
        self.worker.stopping.set()
        self.worker.hurry()
        return True

    def _finish_shutdown(self, deadline: float) -> None:
        """Wait for the worker until ``deadline``, then spool whatever is left."""
        thread = self.worker.thread
        alive = (
            thread is not None and thread.is_alive() and thread is not threading.current_thread()
        )
        if alive:
            assert thread is not None
            thread.join(max(deadline - time.monotonic(), 0.0))
            alive = thread.is_alive()
        self._spool_leftovers(worker_alive=alive, deadline=deadline)
        delivery = self.delivery
        if delivery.shipper is not None:
            with contextlib.suppress(Exception):
                delivery.shipper.close()
        answered = {item for item, _ in list(delivery.answers)}
        if not delivery.inflight - answered:
            # never close the pool under a request that is still running
            with contextlib.suppress(Exception):
                self.exporter.shutdown()

    def _spool_leftovers(self, *, worker_alive: bool, deadline: float) -> None:
        """After shutdown's join: spool queued items and every batch not yet delivered."""
        items: list[Any] = []
        buf = self.worker.buf
        while buf:
            items.append(buf.popleft())
        # the gate is free unless its holder is stuck inside prepare() (a hung lazy
        # callable); a worker waiting on the network does not hold it
        wait = max(deadline - time.monotonic(), 0.2) if worker_alive else -1
        gate = self.gate.lock
        if gate.acquire(timeout=wait):
            try:
                self._drained += len(items)
                for item in items:
                    self._prepare(item)
                lost = self.delivery.spool_leftovers()
            finally:
                gate.release()
        else:
            self.counters.bump("dropped_shutdown", len(items))
            lost = self.delivery.spool_leftovers()  # the one holding the gate is stuck
        with self.worker.lock:
            self.worker.idle.notify_all()
        if lost:
            self.counters.bump("dropped_shutdown", lost)
            log.warning(
                "gf_integrations: %d message(s) could not be delivered before exit%s",
                lost,
                "" if self._spool else " (set spool_dir to keep them)",
            )

    # -- a process about to be frozen (serverless platforms, docs/DESIGN.md section 6b) ------

    def spool_pending(self, timeout: float = 0.1) -> int:
        """Write everything not yet delivered to the spool now, and keep running.

        For a process that is about to be frozen with work still pending (a serverless
        invocation at its deadline). On this thread, holding the gate: what is queued is
        prepared, open batches close, and every batch in flight, waiting for a retry or
        ready is written to the spool, oldest first; a request still in flight that is
        answered later only deletes its file. Spooled work is resent by
        :meth:`resend_spool` (or after the next delivery), and counted in
        ``stats()["spooled"]``. Returns the number of messages spooled: 0 without a spool
        (the work then stays in memory, nothing is dropped) or when the gate was not free
        within ``timeout``. Never raises.
        """
        if self._spool is None or self._closed:
            return 0
        if self.worker.on_thread() or self.gate.preparing_here():
            return 0
        gate = self.gate.lock
        if not gate.acquire(timeout=max(timeout, 0.0)):
            return 0
        try:
            while self._prepare_next():
                pass
            return self.delivery.spool_now()
        except Exception as exc:
            self._once.warn(
                f"spool_now:{type(exc).__name__}",
                f"gf_integrations: could not spool pending work ({type(exc).__name__})",
            )
            return 0
        finally:
            gate.release()
            with self.worker.lock:
                self.worker.idle.notify_all()

    def resend_spool(self) -> bool:
        """Start resending what the spool holds, now (a frozen process was thawed: a new
        serverless invocation began). The worker resends it; ``flush`` waits for it. False
        when there is no spool or nothing in it. Never raises."""
        if self._spool is None or self._closed:
            return False
        if self.delivery.resending:
            return True
        if not self._spool.has_files():
            return False
        self.delivery.resending = True
        if self.worker.thread is None and not self.worker.start():
            return False
        self.worker.wake()
        return True

    # -- the worker's turn -------------------------------------------------------------------

    def _turn(self, stopping: bool) -> bool:
        """One worker turn; True when the worker should exit.

        The gate is held in short slices of pure Python (one item, then the delivery's
        bookkeeping), never across a syscall: a thread that gives up the GIL may not get it
        back for a long while under a busy host, and must not hold the gate meanwhile.
        """
        worker, delivery, gate = self.worker, self.delivery, self.gate
        urgent = worker.urgent > 0 or stopping
        with gate.lock:
            prepares = gate.worker_prepares(urgent)
        if prepares:
            for _ in range(_MAX_DRAIN):
                with gate.lock:
                    if not self._prepare_next():
                        break
        delivery.poll()
        with gate.lock:
            delivery.take_answers()
            now = time.monotonic()
            caught_up = not worker.buf or self._past_deadline()
            # A flush/shutdown sends partial batches only once the backlog is prepared:
            # until then they can still fill up (fewer, fuller POSTs). The deadline still
            # bounds it.
            if urgent and caught_up:
                opened_before = math.inf
            else:
                # While a backlog waits for this thread, open batches get a little longer
                # to fill up (bounded: 4 intervals): under load, fewer and fuller POSTs.
                backlog = bool(worker.buf) and prepares
                age = self.settings.flush_interval * (4 if backlog else 1)
                opened_before = self._close_before(now, age)
            delivery.close_due(opened_before)
            delivery.resend_spool(stopping)
            jobs = delivery.take_jobs(now)
            done = not worker.buf and not (delivery.batches or delivery.ready or delivery.waiting)
            in_flight = bool(delivery.inflight)
        delivery.ship(jobs)
        if stopping:
            return (done and not in_flight) or self._past_deadline()
        return False

    def _close_before(self, now: float, age: float) -> float:
        """Batches opened before this close now: those ``age`` old, or all of them when half
        the memory bound is held (partial batches go out rather than new events drop)."""
        return math.inf if self.delivery.held >= self.gate.held_at else now - age

    def _start_shipper(self) -> None:
        self.delivery.get_shipper().start()

    def _next_wait(self) -> float:
        worker = self.worker
        if worker.urgent > 0 or worker.stopping.is_set():
            return 0.01
        if worker.buf or self.delivery.answers:
            return 0.0
        now = time.monotonic()
        due = now + self.settings.flush_interval
        with self.gate.lock:
            held = self.delivery.next_due(now)
        if held is not None:
            due = min(due, held)
        return max(0.0, due - now)

    def _past_deadline(self) -> bool:
        deadline = self.delivery.deadline
        return deadline is not None and time.monotonic() >= deadline

    def _prepare_next(self) -> bool:
        """Take the oldest queued item and prepare it (holding the gate); False when the
        queue is empty."""
        try:
            item = self.worker.buf.popleft()
        except IndexError:
            return False
        self._drained += 1
        self._prepare(item)
        return True

    def _prepare(self, item: Any) -> None:
        """Turn one item into parts and batch them (holding the gate).

        Never raises, except a KeyboardInterrupt on a host thread (that is the user's).
        """
        try:
            parts = (item,) if isinstance(item, Part) else tuple(self.prepare(item))
        except BaseException as exc:  # a lazy callable's SystemExit must not kill the worker
            self.counters.bump("failed_mapping")
            self._mapping_failures += 1  # flush() promises delivery: a lost item is a failure
            self._once.warn(
                f"map:{type(exc).__name__}",
                f"gf_integrations: could not map a {type(item).__name__} event "
                f"({type(exc).__name__}); it was skipped",
            )
            if isinstance(exc, KeyboardInterrupt) and self.gate.preparing_here():
                raise
            return
        self.delivery.add(parts)

    # -- misc ----------------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Delivery counters (queued, sent, retried, dropped, dropped_*, spooled, ...)."""
        snap = self.counters.as_dict()
        queue_size = len(self.worker.buf)
        snap["queued"] = self._drained + queue_size
        snap["queue_size"] = queue_size
        snap["in_flight"] = len(self.delivery.inflight)
        snap["prepared_by_callers"] = self.gate.by_hosts
        return snap


def _parts_only(item: Any) -> Iterable[Part]:
    raise TypeError(f"no preparer for {type(item).__name__}")


def _after_fork_in_child() -> None:
    """The one fork hook: locks replaced, the parent's sender processes forgotten (their
    pipes closed on our side), every uploader rebuilt empty."""
    _state.reinit_after_fork()
    _shippers.forget_senders_after_fork()
    for uploader in _state.live():
        with contextlib.suppress(Exception):
            uploader._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)

"""The background uploader: one bounded queue, one daemon worker, batches per conversation.

Policy (DESIGN.md section 5):

* ``submit`` never blocks and never raises: a full queue drops the newest event and
  counts it (logged once).
* The worker maps events to messages (the :class:`~gf_integrations.core.recorder.Mapper`),
  groups them per conversation and sends a batch when it reaches the count or byte cap,
  or when its oldest message is ``flush_interval`` old.
* Retries (408/409/429/5xx, timeouts, connection errors) use capped, jittered
  exponential backoff, bounded by a time budget; ``Retry-After`` is a clamped minimum
  and, because the single worker waits, pauses the whole uploader. Other 4xx drop the
  batch with one log line (status and server message, never the payload or key).
* ``flush(timeout)`` returns by its deadline. At exit a bounded flush runs; whatever is
  still undelivered goes to the spool directory (if set) and is resent on next start.
  Resending is safe because message ids are deterministic and the server deduplicates.
* After ``os.fork()`` the child gets a fresh queue, locks and thread (lazily started).
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import dataclasses
import json
import logging
import os
import queue
import random
import threading
import time
import uuid
import weakref
from pathlib import Path
from typing import Any

from ..core.context import Conv
from ..core.events import Event
from ..core.recorder import Mapper, Outgoing, conversation_fields
from ..core.settings import Settings
from .exporters import Exporter, ExportResult

log = logging.getLogger("gf_integrations")

_STOP = object()
_SPOOL_SUFFIX = ".json"


@dataclasses.dataclass(slots=True)
class _Batch:
    conv: Conv
    messages: list[dict[str, Any]]
    size: int
    opened: float
    system_prompt: str | dict[str, Any] | None = None


@dataclasses.dataclass(slots=True)
class _Payload:
    payload: bytes
    count: int
    spool_path: Path | None = None


class Counters:
    """Delivery counters, readable from any thread (``client.stats()``)."""

    __slots__ = (
        "batches_sent",
        "dropped_fatal",
        "dropped_oversize",
        "dropped_queue_full",
        "dropped_shutdown",
        "failed_mapping",
        "queued",
        "retried",
        "sampled_out",
        "sent",
        "spooled",
        "unspooled",
    )

    def __init__(self) -> None:
        self.queued = 0
        self.sent = 0
        self.batches_sent = 0
        self.retried = 0
        self.dropped_queue_full = 0
        self.dropped_fatal = 0
        self.dropped_oversize = 0
        self.dropped_shutdown = 0
        self.failed_mapping = 0
        self.spooled = 0
        self.unspooled = 0
        self.sampled_out = 0

    def as_dict(self) -> dict[str, int]:
        """A snapshot."""
        return {name: getattr(self, name) for name in self.__slots__}


class Uploader:
    """Owns the queue, worker thread, batching, retries, flush, exit and fork handling."""

    def __init__(
        self, settings: Settings, exporter: Exporter, mapper: Mapper | None = None
    ) -> None:
        self.settings = settings
        self.exporter = exporter
        self.mapper = mapper or Mapper(
            limits=settings.limits, mask=settings.mask, sample_rate=settings.sample_rate
        )
        self.counters = Counters()
        self._spool_dir = Path(settings.spool_dir) if settings.spool_dir else None
        self._init_runtime()
        self._closed = False
        self._warned: set[str] = set()
        ref = weakref.WeakMethod(self._after_fork)
        os.register_at_fork(after_in_child=lambda: (m := ref()) is not None and m())
        exit_ref = weakref.WeakMethod(self._atexit)
        atexit.register(lambda: (m := exit_ref()) is not None and m())

    # -- runtime state (recreated after fork) -------------------------------------------

    def _init_runtime(self) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=self.settings.max_queue_size)
        self._lock = threading.Lock()  # guards _pending, _inflight and the thread handle
        self._idle = threading.Condition(self._lock)
        self._pending: collections.OrderedDict[tuple[Any, ...], _Batch] = collections.OrderedDict()
        self._inflight: list[_Payload] = []
        self._thread: threading.Thread | None = None
        self._thread_pid = os.getpid()
        self._wake = threading.Event()  # cuts short retry sleeps (flush urgency, shutdown)
        self._urgent = 0  # >0 while a flush/shutdown wants batches sent now
        self._stopping = threading.Event()
        self._deadline: float | None = None  # shutdown deadline (monotonic)
        self._busy = False  # worker holds an item it has not finished
        self._failures = 0  # messages lost or spooled, for flush()'s verdict

    def _after_fork(self) -> None:
        # Replace (never acquire) every lock: another thread may have held one at fork time.
        self._init_runtime()
        reset = getattr(self.exporter, "reset_after_fork", None)
        if callable(reset):
            with contextlib.suppress(Exception):
                reset()

    # -- producer side ---------------------------------------------------------------------

    def submit(self, event: Event) -> bool:
        """Queue one event. Never blocks; False when it was dropped."""
        if self._closed:
            self.counters.dropped_shutdown += 1
            return False
        if self._thread is None or self._thread_pid != os.getpid() or not self._thread.is_alive():
            if not self._ensure_thread():
                self.counters.dropped_shutdown += 1
                return False
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.counters.dropped_queue_full += 1
            self._warn_once(
                "queue_full",
                "gf_integrations: upload queue full "
                f"({self.settings.max_queue_size} events); dropping new events",
            )
            return False
        self.counters.queued += 1
        return True

    def _ensure_thread(self) -> bool:
        with self._lock:
            if (
                self._thread is not None
                and self._thread.is_alive()
                and self._thread_pid == os.getpid()
            ):
                return True
            if self._thread_pid != os.getpid():
                return False  # _after_fork did not run (should not happen); stay quiet
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
        """Send everything queued so far; True when all of it was delivered in time."""
        deadline = time.monotonic() + max(timeout, 0.0)
        if self._thread is None or not self._thread.is_alive():
            if self._queue.empty() and not self._pending:
                return True
            if not self._ensure_thread():
                return False
        with self._lock:
            failures_before = self._failures
            self._urgent += 1
        self._wake.set()
        try:
            self._queue.put_nowait(None)  # wake a worker waiting on get()
        except queue.Full:
            pass
        try:
            with self._idle:
                while not self._is_idle():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        pending = self._queue.qsize() + sum(
                            len(b.messages) for b in self._pending.values()
                        )
                        log.info(
                            "gf_integrations: flush timed out with about %d item(s) pending",
                            pending,
                        )
                        return False
                    self._idle.wait(min(remaining, 0.05))
                return self._failures == failures_before
        finally:
            with self._lock:
                self._urgent -= 1

    def _is_idle(self) -> bool:
        # caller holds _lock
        return (
            self._queue.unfinished_tasks == 0
            and not self._pending
            and not self._inflight
            and not self._busy
        )

    def shutdown(self, timeout: float | None = None) -> None:
        """Flush within ``timeout`` (default ``shutdown_timeout``), spool the rest, stop.

        Idempotent. Events submitted afterwards are dropped and counted.
        """
        if self._closed:
            return
        budget = self.settings.shutdown_timeout if timeout is None else max(timeout, 0.0)
        deadline = time.monotonic() + budget
        self._closed = True
        thread = self._thread
        if thread is not None and thread.is_alive() and self._thread_pid == os.getpid():
            self._deadline = deadline
            self._stopping.set()
            self._wake.set()
            try:
                self._queue.put_nowait(_STOP)
            except queue.Full:
                pass  # the worker checks _stopping after each item
            thread.join(max(deadline - time.monotonic(), 0.0))
        # Whatever the worker did not deliver in time: spool (or count as lost).
        self._spool_leftovers()
        with contextlib.suppress(Exception):
            self.exporter.shutdown()

    def _atexit(self) -> None:
        with contextlib.suppress(Exception):
            self.shutdown()

    # -- worker ------------------------------------------------------------------------------

    def _run(self) -> None:
        self._resend_spool()
        while True:
            try:
                if self._step():
                    break
            except Exception as exc:  # keep the worker alive whatever happens
                self._warn_once(
                    f"worker:{type(exc).__name__}",
                    f"gf_integrations: uploader error ({type(exc).__name__}); continuing",
                )
                with self._lock:
                    self._busy = False
                    self._idle.notify_all()
        with self._lock:
            self._idle.notify_all()

    def _step(self) -> bool:
        """One worker iteration; True when the worker should exit."""
        timeout = self._next_due()
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            item = None
        else:
            self._busy = True  # before task_done, so flush() never sees a false idle
            self._queue.task_done()
        stop = item is _STOP or self._stopping.is_set()
        # Drain what is already waiting so one POST carries many messages.
        items = [] if item is None or item is _STOP else [item]
        while len(items) < 5_000:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                break
            self._busy = True
            self._queue.task_done()
            if more is _STOP:
                stop = True
                continue
            if more is not None:
                items.append(more)
        if items:
            for ev in items:
                self._map(ev)
        urgent = stop or self._urgent > 0
        self._send_due(force=urgent)
        with self._lock:
            self._busy = False
            if self._is_idle():
                self._idle.notify_all()
        if stop:
            return self._queue.empty() or self._past_deadline()
        return False

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _next_due(self) -> float:
        if self._urgent > 0 or self._stopping.is_set():
            return 0.01
        with self._lock:
            if not self._pending:
                return self.settings.flush_interval
            oldest = min(b.opened for b in self._pending.values())
        return max(0.0, oldest + self.settings.flush_interval - time.monotonic())

    def _map(self, event: Event) -> None:
        try:
            outgoing = self.mapper.map(event)
        except Exception as exc:
            self.counters.failed_mapping += 1
            self._warn_once(
                f"map:{type(exc).__name__}",
                f"gf_integrations: could not map a {type(event).__name__} event "
                f"({type(exc).__name__}: {str(exc)[:200]}); it was skipped",
            )
            return
        self.counters.sampled_out = self.mapper.sampled_out
        for item in outgoing:
            self._add(item)

    def _add(self, item: Outgoing) -> None:
        s = self.settings
        encoded = json.dumps(
            item.message, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        ).encode("utf-8", "surrogatepass")
        size = len(encoded)
        if size > s.max_message_bytes:
            item.message = _shrink(item.message, s.max_message_bytes)
            size = len(
                json.dumps(item.message, ensure_ascii=False).encode("utf-8", "surrogatepass")
            )
            if size > s.max_message_bytes:
                self.counters.dropped_oversize += 1
                self._warn_once(
                    "oversize",
                    "gf_integrations: a message larger than "
                    f"{s.max_message_bytes} bytes was dropped (type "
                    f"{item.message.get('messageType') or item.message.get('role')})",
                )
                return
        key = item.batch_key
        with self._lock:
            batch = self._pending.get(key)
            if batch is not None and (
                len(batch.messages) >= s.max_batch_messages or batch.size + size > s.max_batch_bytes
            ):
                full = self._pending.pop(key)
                batch = None
            else:
                full = None
            if batch is None:
                batch = self._pending[key] = _Batch(item.conv, [], 0, time.monotonic())
            batch.messages.append(item.message)
            batch.size += size + 1
            if item.system_prompt is not None:
                batch.system_prompt = item.system_prompt
        if full is not None:
            self._send_batch(full)

    def _send_due(self, *, force: bool) -> None:
        now = time.monotonic()
        s = self.settings
        while True:
            with self._lock:
                due = None
                for key, batch in self._pending.items():
                    if (
                        force
                        or len(batch.messages) >= s.max_batch_messages
                        or batch.size >= s.max_batch_bytes
                        or now - batch.opened >= s.flush_interval
                    ):
                        due = self._pending.pop(key)
                        break
            if due is None:
                return
            self._send_batch(due)

    def _encode(self, batch: _Batch) -> _Payload:
        body = conversation_fields(batch.conv)
        if batch.system_prompt is not None:
            body["systemPrompt"] = batch.system_prompt
        body["messages"] = batch.messages
        payload = json.dumps(
            body, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        ).encode("utf-8", "surrogatepass")
        return _Payload(payload, len(batch.messages))

    def _send_batch(self, batch: _Batch) -> None:
        self._deliver(self._encode(batch))

    def _deliver(self, item: _Payload) -> bool:
        """Send one payload with retries. True when delivered (or fatally rejected)."""
        s = self.settings
        with self._lock:
            self._inflight.append(item)
        try:
            budget_end = time.monotonic() + s.retry_budget
            attempt = 0
            while True:
                deadline = budget_end if self._deadline is None else min(budget_end, self._deadline)
                remaining = deadline - time.monotonic()
                result = self.exporter.export(
                    item.payload, timeout=max(0.05, min(s.request_timeout, remaining))
                )
                if result.ok:
                    self.counters.sent += item.count
                    self.counters.batches_sent += 1
                    self._forget_spool(item)
                    return True
                if not result.retryable:
                    self._fatal(item, result)
                    return True
                attempt += 1
                delay = self._backoff(attempt, result.retry_after)
                if time.monotonic() + delay > deadline:
                    self._give_up(item, result)
                    return False
                self.counters.retried += 1
                if self._stopping.is_set():
                    # shutting down: the delay fits before the deadline (checked above)
                    self._wake.clear()
                    self._wake.wait(delay)
                else:
                    # shutdown() cuts this short and recomputes the deadline
                    self._stopping.wait(delay)
        finally:
            with self._lock:
                if item in self._inflight:
                    self._inflight.remove(item)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        s = self.settings
        base: float = min(0.5 * 2.0 ** (attempt - 1), s.max_backoff)
        delay = base * (1 - 0.25 * random.random())
        if retry_after is not None:
            delay = max(delay, min(retry_after, s.max_retry_after))
        return delay

    def _fatal(self, item: _Payload, result: ExportResult) -> None:
        self.counters.dropped_fatal += item.count
        with self._lock:
            self._failures += item.count
        self._forget_spool(item)
        log.error(
            "gf_integrations: Greenflash rejected a batch of %d message(s): HTTP %s %s",
            item.count,
            result.status,
            result.detail,
        )

    def _give_up(self, item: _Payload, result: ExportResult) -> None:
        with self._lock:
            self._failures += item.count
            if item in self._inflight:
                self._inflight.remove(item)
        if self._spool(item):
            self._warn_once(
                "spooled",
                "gf_integrations: Greenflash unreachable "
                f"({result.status or result.detail}); batches are kept in "
                f"{self._spool_dir} and resent on next start",
            )
        else:
            self.counters.dropped_fatal += item.count
            self._warn_once(
                "gave_up",
                "gf_integrations: could not deliver a batch after "
                f"retrying ({result.status or result.detail}); dropped "
                f"{item.count} message(s). Set spool_dir to keep them.",
            )

    # -- spool ---------------------------------------------------------------------------------

    def _spool(self, item: _Payload) -> bool:
        if self._spool_dir is None:
            return False
        if item.spool_path is not None and item.spool_path.exists():
            # already on disk (a resend that failed again): put it back for next time
            with contextlib.suppress(OSError):
                item.spool_path.rename(
                    item.spool_path.with_name(item.spool_path.name.split(".sending")[0])
                )
            return True
        try:
            self._spool_dir.mkdir(parents=True, exist_ok=True)
            name = f"{time.time_ns()}-{uuid.uuid4().hex}{_SPOOL_SUFFIX}"
            tmp = self._spool_dir / (name + ".tmp")
            tmp.write_bytes(item.payload)
            tmp.rename(self._spool_dir / name)
        except OSError as exc:
            self._warn_once(
                "spool_error", f"gf_integrations: could not write the spool ({type(exc).__name__})"
            )
            return False
        self.counters.spooled += item.count
        return True

    def _forget_spool(self, item: _Payload) -> None:
        if item.spool_path is not None:
            with contextlib.suppress(OSError):
                item.spool_path.unlink()

    def _resend_spool(self) -> None:
        if self._spool_dir is None or not self._spool_dir.is_dir():
            return
        for path in sorted(self._spool_dir.glob("*" + _SPOOL_SUFFIX)):
            if self._stopping.is_set():
                return
            claimed = path.with_name(f"{path.name}.sending-{os.getpid()}")
            try:
                path.rename(claimed)  # atomic claim: another process may be resending too
                payload = claimed.read_bytes()
                count = len(json.loads(payload).get("messages", []))
            except (OSError, ValueError):
                continue
            self.counters.unspooled += count
            if not self._deliver(_Payload(payload, count, spool_path=claimed)):
                return  # still down: leave the rest for later

    def _spool_leftovers(self) -> None:
        """After shutdown's deadline: spool queued events, pending and in-flight batches."""
        leftovers: list[_Payload] = []
        events: list[Any] = []
        while True:
            try:
                ev = self._queue.get_nowait()
            except queue.Empty:
                break
            if ev is not None and ev is not _STOP:
                events.append(ev)
        thread_alive = self._thread is not None and self._thread.is_alive()
        if events and not thread_alive:
            for ev in events:
                self._map(ev)
        elif events:
            # The worker is stuck (hung server) and owns the mapper: count, do not touch it.
            self.counters.dropped_shutdown += len(events)
        with self._lock:
            batches = list(self._pending.values())
            self._pending.clear()
            # In-flight payloads are spooled too: if the hung request does land later,
            # the resend is deduplicated by externalMessageId.
            leftovers.extend(p for p in self._inflight if p.spool_path is None)
        leftovers.extend(self._encode(b) for b in batches)
        lost = 0
        for item in leftovers:
            if not self._spool(item):
                lost += item.count
        if lost:
            self.counters.dropped_shutdown += lost
            log.warning(
                "gf_integrations: %d message(s) could not be delivered before exit%s",
                lost,
                "" if self._spool_dir else " (set spool_dir to keep them)",
            )

    # -- misc ----------------------------------------------------------------------------------

    def _warn_once(self, key: str, message: str) -> None:
        if key in self._warned:
            return
        self._warned.add(key)
        log.warning(message)

    def stats(self) -> dict[str, int]:
        """Delivery counters (queued, sent, retried, dropped_*, spooled, ...)."""
        snap = self.counters.as_dict()
        snap["queue_size"] = self._queue.qsize()
        return snap


def _shrink(message: dict[str, Any], limit: int) -> dict[str, Any]:
    """Cut the largest text fields of an oversize message, with a visible marker."""
    out = dict(message)
    budget = max(limit // 4, 256)
    for name in ("content", "context"):
        value = out.get(name)
        if isinstance(value, str) and len(value.encode("utf-8", "surrogatepass")) > budget:
            out[name] = value[: budget // 4] + f"…[truncated: message exceeded {limit} bytes]"
    for name in ("input", "output", "properties"):
        value = out.get(name)
        if value is not None and len(json.dumps(value, ensure_ascii=False)) > budget:
            out[name] = {"truncated": f"[field exceeded {budget} bytes]"}
    return out

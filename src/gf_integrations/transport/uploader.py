"""The background uploader: one bounded queue, one daemon worker, batches per conversation.

Policy (docs/DESIGN.md section 6):

* ``submit`` never blocks and never raises: a full queue drops the newest event and
  counts it (logged once).
* The worker maps events to messages (the :class:`~gf_integrations.core.recorder.Mapper`),
  groups them per conversation and closes a batch when it reaches the count or byte cap,
  or when its oldest message is ``flush_interval`` old. Mapping never waits on the
  network: full batches are encoded and queued as "ready" payloads, then sent.
* Retries (408/409/429/5xx, timeouts, connection errors) use capped, jittered
  exponential backoff, bounded by a time budget; ``Retry-After`` is a clamped minimum
  and, because the single worker waits, pauses the whole uploader. Other 4xx drop the
  batch with one log line (status and server message, never the payload or key).
* ``flush(timeout)`` returns by its deadline. At exit a bounded flush runs; whatever is
  still undelivered (queued events, open and ready batches, and the batch a hung request
  is holding) goes to the spool directory (if set) and is resent on next start.
  Resending is safe because message ids are deterministic and the server deduplicates.
* After ``os.fork()`` the child gets a fresh queue, locks, counters and thread (lazily
  started); the parent's unsent work stays the parent's.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import dataclasses
import itertools
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
_MAX_DRAIN = 2_000  # events mapped per worker iteration before sending what is ready
# After waking for an event, the worker waits this long before draining, so a steady
# stream of calls wakes it at most ~50 times a second instead of once per call: every
# wake-up is a GIL hand-off that the host's thread pays for.
_LINGER = 0.02

# One compact encoder, reused: NaN/inf never reach the wire (the recorder already turned
# them into strings; anything that slips through fails loudly here, per message).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _no_default(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# The C encoder built once (JSONEncoder.encode builds one per call: ~40% of its cost).
# No cycle markers: the recorder's safe JSON already breaks cycles.
_c_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
_C_ENCODE: Any = (
    _c_make_encoder(
        None, _no_default, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )
    if _c_make_encoder is not None
    else None
)


def encode_json(value: Any) -> bytes:
    """Compact UTF-8 JSON; lone surrogates (invalid UTF-8) become U+FFFD, never an error."""
    if _C_ENCODE is not None and type(value) is dict:
        text = "".join(_C_ENCODE(value, 0))
    else:
        text = _ENCODER.encode(value)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


@dataclasses.dataclass(slots=True)
class _Batch:
    conv: Conv
    messages: list[bytes]  # each message already encoded (encode once, join at send)
    size: int  # bytes of the request body so far: envelope + messages + commas
    opened: float
    system_prompt: str | dict[str, Any] | None = None


@dataclasses.dataclass(slots=True, eq=False)
class _Payload:
    payload: bytes
    count: int
    spool_path: Path | None = None
    # Set (under the uploader lock) when shutdown took this in-flight payload over and
    # spooled it: the worker must then neither spool it again nor count it as lost.
    handed_off: bool = False


class Counters:
    """Delivery counters, readable from any thread (``client.stats()``).

    Producer-side counters (``queued``, ``dropped_queue_full``, ``dropped_shutdown``) are
    bumped from many threads at once, so they use ``itertools.count`` (atomic in CPython)
    instead of ``+= 1`` (which can lose updates between threads).
    """

    _ATOMIC = ("queued", "dropped_queue_full", "dropped_shutdown")
    _PLAIN = (
        "batches_sent",
        "dropped_fatal",
        "dropped_oversize",
        "dropped_retries",
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
        self._atomic: dict[str, itertools.count[int]] = {
            name: itertools.count() for name in self._ATOMIC
        }
        self._plain: dict[str, int] = dict.fromkeys(self._PLAIN, 0)

    def bump(self, name: str, n: int = 1) -> None:
        """Add ``n`` to a counter."""
        counter = self._atomic.get(name)
        if counter is not None:
            for _ in range(n):
                next(counter)
            return
        with self._lock:
            self._plain[name] += n

    def set(self, name: str, value: int) -> None:
        """Set a worker-owned counter."""
        with self._lock:
            self._plain[name] = value

    def __getattr__(self, name: str) -> int:
        # counters read as attributes: ``uploader.counters.sent``
        if name.startswith("_"):
            raise AttributeError(name)
        return self.as_dict()[name]

    def as_dict(self) -> dict[str, int]:
        """A snapshot, plus ``dropped`` (the sum of every ``dropped_*``)."""
        with self._lock:
            snap = dict(self._plain)
        for name, counter in self._atomic.items():
            # reading an itertools.count: its repr is "count(N)"; no public getter
            snap[name] = int(repr(counter)[6:-1])
        snap["dropped"] = sum(v for k, v in snap.items() if k.startswith("dropped_"))
        return snap


class Uploader:
    """Owns the queue, worker thread, batching, retries, flush, exit and fork handling."""

    def __init__(
        self,
        settings: Settings,
        exporter: Exporter,
        mapper: Mapper | None = None,
        *,
        resend_spool: bool = True,
    ) -> None:
        """``resend_spool=False`` leaves an existing spool alone (a client that cannot
        send, e.g. no API key, must not turn spooled batches into 401 drops)."""
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
        os.register_at_fork(after_in_child=lambda: _call_ref(ref))
        with _live_lock[0]:
            _live.add(self)  # one shared, bounded exit flush (see _shutdown_all_at_exit)
        if resend_spool and self._spool_has_files():
            # undelivered batches from an earlier run: resend them now, not on first use
            self._busy = True  # flush() waits for the resend
            if not self._ensure_thread():
                self._busy = False

    # -- runtime state (recreated after fork) -------------------------------------------

    def _init_runtime(self) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=self.settings.max_queue_size)
        self._lock = threading.Lock()  # guards _pending, _ready, _inflight, thread handle
        self._idle = threading.Condition(self._lock)
        self._map_lock = threading.Lock()  # the mapper is single-threaded state
        self._pending: collections.OrderedDict[tuple[Any, ...], _Batch] = collections.OrderedDict()
        self._ready: collections.deque[_Payload] = collections.deque()
        self._inflight: list[_Payload] = []
        self._thread: threading.Thread | None = None
        self._thread_pid = os.getpid()
        self._urgent = 0  # >0 while a flush/shutdown wants batches sent now
        self._stopping = threading.Event()
        self._linger_cut = threading.Event()
        self._deadline: float | None = None  # shutdown deadline (monotonic)
        self._busy = False  # worker holds items it has not finished
        self._failures = 0  # events/messages lost or spooled, for flush()'s verdict
        self._failures_reported = 0  # _failures at the end of the last flush()
        self._spooled_this_run = False

    def _after_fork(self) -> None:
        # Replace (never acquire) every lock: another thread may have held one at fork time.
        self._init_runtime()
        self.counters = Counters()
        reset = getattr(self.exporter, "reset_after_fork", None)
        if callable(reset):
            with contextlib.suppress(Exception):
                reset()

    # -- producer side ---------------------------------------------------------------------

    def submit(self, event: Event) -> bool:
        """Queue one event. Never blocks; False when it was dropped."""
        if self._closed:
            self.counters.bump("dropped_shutdown")
            return False
        thread = self._thread
        if thread is None or not thread.is_alive() or self._thread_pid != os.getpid():
            if not self._ensure_thread():
                self.counters.bump("dropped_shutdown")
                return False
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.counters.bump("dropped_queue_full")
            self._warn_once(
                "queue_full",
                "gf_integrations: upload queue full "
                f"({self.settings.max_queue_size} events); dropping new events "
                "(counted in stats()['dropped_queue_full'])",
            )
            return False
        self.counters.bump("queued")
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
        thread = self._thread
        if thread is None or not thread.is_alive() or self._thread_pid != os.getpid():
            if not self._ensure_thread():
                return False
        with self._lock:
            self._urgent += 1
        self._linger_cut.set()
        try:
            self._queue.put_nowait(None)  # wake a worker waiting on get()
        except queue.Full:
            pass
        try:
            with self._idle:
                while not self._is_idle():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        log.info(
                            "gf_integrations: flush timed out with about %d message(s) pending",
                            self._pending_count(),
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

    def _pending_count(self) -> int:
        # caller holds _lock
        return (
            self._queue.qsize()
            + sum(len(b.messages) for b in self._pending.values())
            + sum(p.count for p in self._ready)
            + sum(p.count for p in self._inflight)
        )

    def _is_idle(self) -> bool:
        # caller holds _lock
        return (
            self._queue.unfinished_tasks == 0
            and not self._pending
            and not self._ready
            and not self._inflight
            and not self._busy
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
        """Stop accepting events and tell the worker to send everything now."""
        with self._lock:
            if self._closed:
                return False
            self._closed = True
            pending = self._pending_count()
        if at_exit and pending:
            log.info(
                "gf_integrations: sending %d pending message(s) before exit (up to %.1f s)",
                pending,
                max(deadline - time.monotonic(), 0.0),
            )
        self._deadline = deadline
        self._stopping.set()
        self._linger_cut.set()
        try:
            self._queue.put_nowait(_STOP)
        except queue.Full:
            pass  # the worker checks _stopping after each item
        return True

    def _finish_shutdown(self, deadline: float) -> None:
        """Wait for the worker until ``deadline``, then spool whatever is left."""
        thread = self._thread
        alive = (
            thread is not None
            and thread.is_alive()
            and self._thread_pid == os.getpid()
            and thread is not threading.current_thread()
        )
        if alive:
            assert thread is not None
            thread.join(max(deadline - time.monotonic(), 0.0))
            alive = thread.is_alive()
        # Whatever the worker did not deliver in time: spool (or count as lost).
        self._spool_leftovers(worker_alive=alive, deadline=deadline)
        if not alive:
            # never close the pool under a request that is still running
            with contextlib.suppress(Exception):
                self.exporter.shutdown()

    # -- worker ------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            try:
                self._resend_spool()
            finally:
                with self._lock:
                    self._busy = False
            while True:
                try:
                    if self._step():
                        break
                except Exception as exc:  # keep the worker alive whatever happens
                    self._warn_once(
                        f"worker:{type(exc).__name__}",
                        f"gf_integrations: uploader error ({type(exc).__name__}); continuing",
                    )
                    self._requeue_inflight()
        finally:
            # a dying worker (BaseException) leaves its batch for the next one
            self._requeue_inflight()

    def _requeue_inflight(self) -> None:
        """Put payloads whose send was cut short back at the head of the line."""
        with self._lock:
            self._busy = False
            for item in reversed(self._inflight):
                if not item.handed_off:
                    self._ready.appendleft(item)
            self._inflight.clear()
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
        if item is not None and item is not _STOP and not self._urgent:
            self._linger_cut.wait(_LINGER)  # flush() and shutdown() cut it short
            self._linger_cut.clear()
        stop = item is _STOP or self._stopping.is_set()
        # Drain what is already waiting so one POST carries many messages.
        items = [] if item is None or item is _STOP else [item]
        while len(items) < _MAX_DRAIN:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                break
            self._busy = True
            self._queue.task_done()
            if more is _STOP:
                stop = True
            elif more is not None:
                items.append(more)
        if items:
            with self._map_lock:
                for ev in items:
                    self._map(ev)
            self.counters.set("sampled_out", self.mapper.sampled_out)
        # A flush/shutdown sends partial batches only once the backlog is mapped: until
        # then they can still fill up (fewer, fuller POSTs). The deadline still bounds it.
        caught_up = self._queue.qsize() == 0 or self._past_deadline()
        self._send_due(force=(stop or self._urgent > 0) and caught_up)
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
            if self._ready:
                return 0.0
            if not self._pending:
                return self.settings.flush_interval
            oldest = min(b.opened for b in self._pending.values())
        return max(0.0, oldest + self.settings.flush_interval - time.monotonic())

    def _map(self, event: Event) -> None:
        """Map one event into batches (caller holds ``_map_lock``). Never raises."""
        try:
            outgoing = self.mapper.map(event)
        except BaseException as exc:  # a lazy callable's SystemExit must not kill the worker
            self.counters.bump("failed_mapping")
            with self._lock:
                self._failures += 1  # flush() promises delivery: a lost event is a failure
            self._warn_once(
                f"map:{type(exc).__name__}",
                f"gf_integrations: could not map a {type(event).__name__} event "
                f"({type(exc).__name__}: {str(exc)[:200]}); it was skipped",
            )
            return
        for item in outgoing:
            try:
                self._add(item)
            except Exception as exc:
                self.counters.bump("failed_mapping")
                self._warn_once(
                    f"encode:{type(exc).__name__}",
                    f"gf_integrations: could not encode a message ({type(exc).__name__}); "
                    "it was skipped",
                )

    def _add(self, item: Outgoing) -> None:
        s = self.settings
        encoded = encode_json(item.message)
        size = len(encoded)
        if size > s.max_message_bytes:
            encoded = encode_json(_shrink(item.message, s.max_message_bytes))
            size = len(encoded)
            if size > s.max_message_bytes:
                self.counters.bump("dropped_oversize")
                self._warn_once(
                    "oversize",
                    "gf_integrations: a message larger than "
                    f"{s.max_message_bytes} bytes was dropped (type "
                    f"{item.message.get('messageType') or item.message.get('role')})",
                )
                return
            self.counters.bump("shrunk_oversize")
            self._warn_once(
                "shrunk",
                "gf_integrations: a message larger than "
                f"{s.max_message_bytes} bytes was cut down to fit (marked '[truncated: ...]')",
            )
        key = item.batch_key
        prompt = item.system_prompt
        extra = size + 1 + (len(encode_json(prompt)) + 16 if prompt is not None else 0)
        with self._lock:
            batch = self._pending.get(key)
            if batch is not None and batch.messages and batch.size + extra > s.max_batch_bytes:
                # the byte cap: close this batch, start a new one for the message
                self._ready.append(self._encode(self._pending.pop(key)))
                batch = None
            if batch is None:
                # "{envelope}" + ',"messages":[' + "]}"
                envelope = len(encode_json(conversation_fields(item.conv))) + 16
                batch = self._pending[key] = _Batch(item.conv, [], envelope, time.monotonic())
            batch.messages.append(encoded)
            batch.size += extra
            if prompt is not None:
                batch.system_prompt = prompt
            if len(batch.messages) >= s.max_batch_messages:
                self._ready.append(self._encode(self._pending.pop(key)))

    def _envelope(self, batch: _Batch) -> dict[str, Any]:
        body = conversation_fields(batch.conv)
        if batch.system_prompt is not None:
            body["systemPrompt"] = batch.system_prompt
        return body

    def _encode(self, batch: _Batch) -> _Payload:
        head = encode_json(self._envelope(batch))
        # '{...}' + ',"messages":[m1,m2]}' without re-encoding each message
        payload = b"".join((head[:-1], b',"messages":[', b",".join(batch.messages), b"]}"))
        return _Payload(payload, len(batch.messages))

    def _send_due(self, *, force: bool) -> None:
        s = self.settings
        now = time.monotonic()
        # While a backlog waits in the queue, open batches get a little longer to fill up
        # (bounded: 4 intervals): under load that means fewer, fuller POSTs.
        age = s.flush_interval * (4 if self._queue.qsize() > 0 else 1)
        with self._lock:
            for key in [k for k, b in self._pending.items() if force or now - b.opened >= age]:
                self._ready.append(self._encode(self._pending.pop(key)))
        while True:
            with self._lock:
                if not self._ready:
                    return
                item = self._ready.popleft()
                self._inflight.append(item)
            self._deliver(item)

    def _deliver(self, item: _Payload) -> bool:
        """Send one payload (already in ``_inflight``) with retries.

        True when delivered (or fatally rejected); False when given up.
        """
        finished = False
        try:
            result = self._deliver_with_retries(item)
            finished = True
            return result
        finally:
            # on an escaping exception the payload stays in _inflight to be requeued
            if finished:
                with self._lock:
                    if item in self._inflight:
                        self._inflight.remove(item)

    def _deliver_with_retries(self, item: _Payload) -> bool:
        """The retry loop of :meth:`_deliver`."""
        s = self.settings
        budget_end = time.monotonic() + s.retry_budget
        attempt = 0
        while True:
            deadline = budget_end if self._deadline is None else min(budget_end, self._deadline)
            if item.handed_off:
                return False  # shutdown spooled it while we were waiting
            timeout = s.request_timeout
            if self._deadline is not None:
                left = self._deadline - time.monotonic()
                if left <= 0:
                    self._give_up(item, None)  # past the shutdown deadline: spool it
                    return False
                timeout = min(timeout, left)
            try:
                result = self.exporter.export(item.payload, timeout=max(0.05, timeout))
            except Exception as exc:  # an exporter must not raise; if it does, retry
                result = ExportResult(
                    False, retryable=True, detail=f"exporter raised {type(exc).__name__}"
                )
            if result.ok:
                self.counters.bump("sent", item.count)
                self.counters.bump("batches_sent")
                self._forget_spool(item)
                if self._spooled_this_run and item.spool_path is None:
                    # the server is back: retry what this run spooled, now
                    self._spooled_this_run = False
                    self._resend_spool()
                return True
            if not result.retryable:
                self._fatal(item, result)
                return True
            attempt += 1
            delay = self._backoff(attempt, result.retry_after)
            if time.monotonic() + delay > deadline:
                self._give_up(item, result)
                return False
            self.counters.bump("retried")
            if self._stopping.is_set():
                # shutting down: the delay fits before the deadline (checked above)
                time.sleep(delay)
            else:
                # shutdown() cuts this short; the loop then recomputes the deadline
                self._stopping.wait(delay)

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
        with self._lock:
            self._failures += item.count
            if item.handed_off:
                return  # shutdown already spooled it
            item.handed_off = True
        why = "shutdown deadline" if result is None else (result.status or result.detail)
        if self._spool(item):
            self._warn_once(
                "spooled",
                f"gf_integrations: Greenflash unreachable ({why}); batches are kept in "
                f"{self._spool_dir} and resent on next start",
            )
        else:
            self.counters.bump("dropped_retries", item.count)
            self._warn_once(
                "gave_up",
                f"gf_integrations: could not deliver a batch ({why}); dropped "
                f"{item.count} message(s). Set spool_dir to keep undelivered batches.",
            )

    # -- spool ---------------------------------------------------------------------------------

    def _spool_has_files(self) -> bool:
        if self._spool_dir is None:
            return False
        try:
            return any(self._spool_dir.glob("*" + _SPOOL_SUFFIX)) or any(
                self._spool_dir.glob("*" + _SPOOL_SUFFIX + ".sending-*")
            )
        except OSError:
            return False

    def _spool(self, item: _Payload) -> bool:
        if self._spool_dir is None:
            return False
        if item.spool_path is not None:
            # a resend from the spool that failed again: put the file back for next time
            original = item.spool_path.with_name(item.spool_path.name.split(".sending")[0])
            try:
                item.spool_path.rename(original)
                item.spool_path = original
                return True
            except OSError:
                pass  # already gone (delivered meanwhile): write it again below
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
        item.spool_path = self._spool_dir / name
        self._spooled_this_run = True
        self.counters.bump("spooled", item.count)
        return True

    def _forget_spool(self, item: _Payload) -> None:
        if item.spool_path is not None:
            with contextlib.suppress(OSError):
                item.spool_path.unlink()

    def _resend_spool(self) -> None:
        if self._spool_dir is None or not self._spool_dir.is_dir():
            return
        self._reclaim_stale_claims()
        for path in sorted(self._spool_dir.glob("*" + _SPOOL_SUFFIX)):
            if self._stopping.is_set():
                return
            claimed = path.with_name(f"{path.name}.sending-{os.getpid()}")
            try:
                path.rename(claimed)  # atomic claim: another process may be resending too
                payload = claimed.read_bytes()
                count = len(json.loads(payload).get("messages", []))
            except (OSError, ValueError, AttributeError):
                continue
            self.counters.bump("unspooled", count)
            item = _Payload(payload, count, spool_path=claimed)
            with self._lock:
                self._inflight.append(item)
            if not self._deliver(item):
                return  # still down: leave the rest for later

    def _reclaim_stale_claims(self) -> None:
        """Put back files claimed by a process that died while resending them."""
        assert self._spool_dir is not None
        for path in self._spool_dir.glob("*" + _SPOOL_SUFFIX + ".sending-*"):
            try:
                pid = int(path.name.rsplit("-", 1)[1])
            except ValueError:
                continue
            if pid != os.getpid() and _pid_alive(pid):
                continue
            with contextlib.suppress(OSError):
                path.rename(path.with_name(path.name.split(".sending")[0]))

    def _spool_leftovers(self, *, worker_alive: bool, deadline: float) -> None:
        """After shutdown's join: spool queued events, open, ready and in-flight batches."""
        events: list[Any] = []
        while True:
            try:
                ev = self._queue.get_nowait()
            except queue.Empty:
                break
            if ev is not None and ev is not _STOP:
                events.append(ev)
        if events:
            # The mapper is free unless the worker is stuck inside it (a hung lazy callable);
            # a worker stuck in a network call does not hold it.
            wait = max(deadline - time.monotonic(), 0.2) if worker_alive else -1
            if self._map_lock.acquire(timeout=wait):
                try:
                    for ev in events:
                        self._map(ev)
                finally:
                    self._map_lock.release()
            else:
                self.counters.bump("dropped_shutdown", len(events))
        with self._lock:
            leftovers = list(self._ready)
            self._ready.clear()
            leftovers.extend(self._encode(b) for b in self._pending.values())
            self._pending.clear()
            # The batch a hung request holds is spooled too; if that request lands after
            # all, the worker deletes the spool file (and a resend would be deduplicated).
            for p in self._inflight:
                if not p.handed_off:
                    p.handed_off = True
                    leftovers.append(p)
            self._idle.notify_all()
        lost = 0
        for item in leftovers:
            if not self._spool(item):
                lost += item.count
        if lost:
            self.counters.bump("dropped_shutdown", lost)
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
        """Delivery counters (queued, sent, retried, dropped, dropped_*, spooled, ...)."""
        snap = self.counters.as_dict()
        snap["queue_size"] = self._queue.qsize()
        return snap


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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _shrink(message: dict[str, Any], limit: int) -> dict[str, Any]:
    """Cut the largest text fields of an oversize message, with a visible marker."""
    out = dict(message)
    budget = max(limit // 4, 256)
    for name in ("content", "context"):
        value = out.get(name)
        if isinstance(value, str) and len(value.encode("utf-8", "replace")) > budget:
            # characters can take up to 4 bytes: keep budget // 4 of them
            out[name] = value[: budget // 4] + f"…[truncated: message exceeded {limit} bytes]"
    for name in ("input", "output", "properties"):
        value = out.get(name)
        if value is not None and len(encode_json(value)) > budget:
            out[name] = {"truncated": f"[field exceeded {budget} bytes]"}
    return out

"""Shippers: run several exports at once and report each outcome through a callback.

The uploader's worker never waits on the network: it hands a job to a shipper and goes
on batching; the shipper calls ``on_done(job, result)`` from its own thread when the
request ends. Two kinds:

* :class:`ThreadShipper` calls any :class:`~.exporters.Exporter` from a few daemon
  threads, in this process (custom exporters, tests, and the fallback).
* :class:`ProcessShipper` hands request bodies through a pipe to a child interpreter
  (``transport/sender.py``, run as a script) that does the HTTP: the host's GIL
  pays one pipe write per batch of requests and one read per batch of answers, instead of
  several socket calls (each a GIL hand-off) per request.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from .exporters import Exporter, ExportResult, export_to
from .sender import ANSWER, FLAG_HAS_RETRY_AFTER, FLAG_OK, FLAG_RETRYABLE, REQUEST

log = logging.getLogger("gf_integrations")

_SENDER = Path(__file__).with_name("sender.py")
_WINDOW_PER_CONNECTION = 256


class Job(Protocol):
    """What a shipper needs from the uploader's payload."""

    path: str
    body: bytes


OnDone = Callable[[Any, ExportResult], None]


class Shipper(Protocol):
    """Runs exports concurrently; never blocks the caller."""

    def start(self) -> None:
        """Get ready to ship (called once the uploader has work)."""
        ...

    window: int  # how many jobs the uploader may have out at once

    def ship(self, jobs: list[tuple[Any, float]]) -> None:
        """Start requests (job, timeout); ``on_done`` is called once for each when it ends."""
        ...

    def poll(self) -> None:
        """Report the answers that already arrived, from this thread, without waiting
        (the worker or a host thread taking a turn need not wait for the reader's)."""
        ...

    def close(self) -> None:
        """Release threads/processes (requests still running are abandoned)."""
        ...


class ThreadShipper:
    """Up to ``concurrency`` exports at once, each on its own daemon thread."""

    def __init__(self, exporter: Exporter, concurrency: int, on_done: OnDone) -> None:
        self.exporter = exporter
        self.concurrency = self.window = concurrency
        self.on_done = on_done
        self._init()

    def _init(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Any, float] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        """Threads start on demand."""

    def ship(self, jobs: list[tuple[Any, float]]) -> None:
        for job, timeout in jobs:
            self._ship_one(job, timeout)

    def _ship_one(self, job: Any, timeout: float) -> None:
        self._jobs.put((job, timeout))
        with self._lock:
            if self._idle > 0:
                self._idle -= 1
                return
            if len(self._threads) >= self.concurrency:
                return  # the uploader never has more than ``concurrency`` jobs out
            thread = threading.Thread(target=self._loop, name="gf-integrations-sender", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # interpreter shutting down: send from here, once
                self._threads.append(thread)
                self._run_one()
                return
            self._threads.append(thread)

    def _run_one(self) -> None:
        item = self._jobs.get()
        if item is not None:
            job, timeout = item
            self.on_done(job, export_to(self.exporter, job.path, job.body, timeout))

    def _loop(self) -> None:
        while True:
            self._run_one()
            with self._lock:
                self._idle += 1

    def poll(self) -> None:
        """Answers come from the sending threads themselves."""

    def close(self) -> None:
        """Threads are daemons, parked on an empty queue: nothing to release."""


# -- out of process -----------------------------------------------------------------------


class ProcessShipper:
    """Exports through a sender process fed by a pipe (see the module docstring).

    Every uploader of this process with the same target shares one sender process, so
    several clients cost one child, not one each. It is started on first use and again
    if it dies (jobs it held come back as retryable failures); if it cannot start,
    ``fallback`` ships in-process.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        concurrency: int,
        on_done: OnDone,
        fallback: Callable[[], Shipper],
    ) -> None:
        self._target = (base_url, api_key, concurrency)
        # requests wait in the sender's queue for one of its ``concurrency`` connections:
        # a deep window keeps them busy while this process answers only a few times a
        # second (each pipe write or read is a GIL hand-off under a busy host)
        self.window = concurrency * _WINDOW_PER_CONNECTION
        self.on_done = on_done
        self._fallback_factory = fallback
        self._sender: _SenderProcess | None = None
        self._fallback: Shipper | None = None

    def start(self) -> None:
        """Start (or join) the sender process now: it takes a few hundred ms to import."""
        if self._sender is None and self._fallback is None:
            self._sender = _shared_sender(self._target)
        if self._sender is not None and not self._sender.ensure_running():
            self._fallback = self._fallback_factory()

    def ship(self, jobs: list[tuple[Any, float]]) -> None:
        if self._fallback is None:
            self.start()
        if self._fallback is not None:
            self._fallback.ship(jobs)
            return
        assert self._sender is not None
        if not self._sender.ship(jobs, self.on_done):
            for job, _ in jobs:
                self.on_done(job, ExportResult(False, retryable=True, detail="connection error"))

    def poll(self) -> None:
        if self._sender is not None:
            self._sender.poll()

    def close(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            sender.release()
        if self._fallback is not None:
            self._fallback.close()


class _SenderProcess:
    """One sender child and its pipes, shared by every :class:`ProcessShipper` of a target."""

    def __init__(self, target: tuple[str, str | None, int]) -> None:
        self.target = target
        self.users = 0
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._jobs: dict[int, tuple[Any, OnDone]] = {}
        self._next_id = 0
        self._failed = False
        self._silent_deaths = 0  # children that exited without answering anything
        self._reading = threading.Lock()  # one thread at a time reads the answers pipe
        self._pending = b""  # the start of an answer whose rest is still in the pipe
        self._answered = False  # this child answered something

    def ensure_running(self) -> bool:
        with self._lock:
            return self._ensure_running()

    def _ensure_running(self) -> bool:
        # caller holds _lock
        if self._failed:
            return False
        if self._proc is not None:  # the answer reader forgets it when the child exits
            return True
        base_url, api_key, concurrency = self.target
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        env["GF_SENDER_API_KEY"] = api_key or ""  # never on the command line
        try:
            proc = subprocess.Popen(
                # a script, not ``-m``: the child imports no package __init__ (~1 s)
                [sys.executable, str(_SENDER), base_url, str(concurrency)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
                close_fds=True,
                bufsize=0,  # raw pipes: nothing buffered that a fork could duplicate
            )
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            log.warning(
                "gf_integrations: could not start the sender process (%s); sending in-process",
                type(exc).__name__,
            )
            self._failed = True
            return False
        try:
            assert proc.stdout is not None
            os.set_blocking(proc.stdout.fileno(), False)  # poll() reads without waiting
        except (OSError, AttributeError):  # a platform without non-blocking pipes
            proc.kill()
            self._failed = True
            return False
        reader = threading.Thread(
            target=self._read_answers, args=(proc,), name="gf-integrations-answers", daemon=True
        )
        try:
            reader.start()
        except RuntimeError:
            proc.kill()
            self._failed = True
            return False
        self._proc = proc
        return True

    def ship(self, jobs: list[tuple[Any, float]], on_done: OnDone) -> bool:
        """Write requests to the sender in one write; False when it is not running."""
        frames = []
        with self._lock:
            if not self._ensure_running():
                return False
            assert self._proc is not None
            ids = []
            for job, timeout in jobs:
                job_id = self._next_id = (self._next_id + 1) & 0xFFFFFFFF
                self._jobs[job_id] = (job, on_done)
                ids.append(job_id)
                path = job.path.encode()
                frames.append(REQUEST.pack(job_id, int(timeout * 1000), len(path), len(job.body)))
                frames.append(path)
                frames.append(job.body)
            try:
                _write_all(self._proc.stdin, b"".join(frames))
            except (OSError, ValueError):
                for job_id in ids:
                    self._jobs.pop(job_id, None)
                return False
        return True

    def poll(self) -> None:
        """Take in the answers waiting in the pipe, if no other thread is at it."""
        proc = self._proc
        if proc is not None and self._reading.acquire(blocking=False):
            try:
                self._read_available(proc)
            except (OSError, ValueError):
                pass  # the reader thread sees the end too, and settles it
            finally:
                self._reading.release()

    def _read_available(self, proc: subprocess.Popen[bytes]) -> bool:
        """Read what the pipe holds now (caller holds ``_reading``); False at its end."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                return True
            if not chunk:
                return False
            self._answered = True
            self._pending = self._answers_in(self._pending + chunk)

    def _read_answers(self, proc: subprocess.Popen[bytes]) -> None:
        """The reader thread: waits for answers (or the child's end) and takes them in,
        unless the worker or a host thread already did (``poll``)."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        try:
            while True:
                # select, then a non-blocking read under the read lock: whoever gets there
                # first takes in every answer waiting (one GIL hand-off for all of them)
                select.select([fd], [], [])
                with self._reading:
                    if not self._read_available(proc):
                        break
        except (OSError, ValueError):
            pass
        # the child is gone: what it held is retried (ids make a double delivery harmless)
        with self._lock:
            if self._proc is not proc:
                return
            lost = list(self._jobs.values())
            self._jobs.clear()
            self._proc = None
            self._pending = b""
            self._silent_deaths = 0 if self._answered else self._silent_deaths + 1
            self._answered = False
            if self._silent_deaths >= 3:  # it cannot run here: send in-process instead
                self._failed = True
                log.warning("gf_integrations: the sender process keeps exiting; sending in-process")
        for job, on_done in lost:
            on_done(job, ExportResult(False, retryable=True, detail="connection error"))

    def _answers_in(self, data: bytes) -> bytes:
        """Report every complete answer in ``data``; return the incomplete rest."""
        at = 0
        answers: list[tuple[int, ExportResult]] = []
        while len(data) - at >= ANSWER.size:
            job_id, status, flags, retry_ms, size = ANSWER.unpack_from(data, at)
            end = at + ANSWER.size + size
            if end > len(data):
                break
            detail = data[at + ANSWER.size : end].decode("utf-8", "replace")
            at = end
            result = ExportResult(
                bool(flags & FLAG_OK),
                retryable=bool(flags & FLAG_RETRYABLE),
                retry_after=retry_ms / 1000 if flags & FLAG_HAS_RETRY_AFTER else None,
                status=status or None,
                detail=detail,
            )
            answers.append((job_id, result))
        with self._lock:  # once per read, not once per answer: the lock is the shipper's too
            entries = [(self._jobs.pop(job_id, None), result) for job_id, result in answers]
        for entry, result in entries:
            if entry is not None:
                entry[1](entry[0], result)
        return data[at:]

    def release(self) -> None:
        """One user fewer; the last one closes the pipe (the child exits on end of input)."""
        with _senders_lock[0]:
            self.users -= 1
            if self.users > 0:
                return
            if _senders.get(self.target) is self:
                del _senders[self.target]
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None and proc.stdin is not None:
            with contextlib.suppress(Exception):
                proc.stdin.close()

    def forget_after_fork(self) -> None:
        """In a forked child: close this process's copies of the pipes, nothing else."""
        proc = self._proc
        if proc is not None:
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()  # raw pipes: closes the child's copy only


_senders: dict[tuple[str, str | None, int], _SenderProcess] = {}
_senders_lock = [threading.Lock()]  # a list so the fork hook can replace it


def _shared_sender(target: tuple[str, str | None, int]) -> _SenderProcess:
    with _senders_lock[0]:
        sender = _senders.get(target)
        if sender is None:
            sender = _senders[target] = _SenderProcess(target)
        sender.users += 1
        return sender


def forget_senders_after_fork() -> None:
    """In a forked child (from the uploader's fork hook): the parent's senders must see the
    parent's end of input, not ours, so close our copies of their pipes."""
    _senders_lock[0] = threading.Lock()
    for sender in list(_senders.values()):
        sender.forget_after_fork()
    _senders.clear()


def _write_all(stream: Any, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = stream.write(view)
        if not written:
            raise OSError("pipe closed")
        view = view[written:]

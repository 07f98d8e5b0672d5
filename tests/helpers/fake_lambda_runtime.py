"""A loopback emulation of the AWS Lambda Runtime API that freezes the runtime like Lambda.

The real runtime interface client (``python -m awslambdaric module.handler``) runs as a
subprocess in its own process group, with ``AWS_LAMBDA_RUNTIME_API`` set to
:attr:`FakeLambdaRuntime.address`. The emulator speaks the endpoints the client uses:

- ``GET /2018-06-01/runtime/invocation/next``: blocks until :meth:`FakeLambdaRuntime.invoke`
  queues an event, then answers it with the ``Lambda-Runtime-Aws-Request-Id``,
  ``Lambda-Runtime-Deadline-Ms`` (epoch milliseconds), ``Lambda-Runtime-Invoked-Function-Arn``
  and ``Lambda-Runtime-Trace-Id`` headers;
- ``POST /2018-06-01/runtime/invocation/<id>/response`` and ``.../<id>/error``: the
  invocation's outcome. Right after receiving it (before answering ``202``), the emulator
  stops the runtime's whole process group with ``SIGSTOP``, as Lambda freezes the sandbox
  once the response is posted; :meth:`invoke` sends ``SIGCONT`` before the next event;
- ``POST /2018-06-01/runtime/init/error``: a failed initialisation.

Every step is an event the test waits on (no sleeps)::

    runtime = FakeLambdaRuntime(on_response=lambda: capture_server.messages)
    proc = runtime.start(["app.handler"], env=..., cwd=...)
    outcome = runtime.invoke({"question": "hi"}, timeout_ms=3000)
    outcome.kind          # "response" or "error"
    outcome.body          # the posted JSON
    outcome.snapshot      # what on_response returned when the outcome arrived
    runtime.wait_init_error()  # or: the error a failed initialisation posted
    runtime.close()       # SIGCONT + SIGKILL of the group, stop the server

``invoke`` returns once the runtime's process group is stopped (confirmed by ``waitpid``
with ``WUNTRACED``), so whatever the test reads afterwards was sent before the freeze.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

PREFIX = "/2018-06-01/runtime"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:gf-test"


@dataclass
class Outcome:
    """What the runtime posted for one invocation."""

    request_id: str
    kind: str  # "response" | "error"
    body: Any
    headers: dict[str, str]
    snapshot: Any = None  # on_response's value at the moment the outcome arrived
    received: float = 0.0  # time.monotonic() when it arrived
    received_ms: int = 0  # epoch milliseconds when it arrived
    served: float = 0.0  # time.monotonic() when the runtime was handed the event
    deadline_ms: int = 0  # the invocation's Lambda-Runtime-Deadline-Ms

    @property
    def in_time(self) -> bool:
        """The outcome arrived before the invocation's deadline."""
        return self.received_ms <= self.deadline_ms


@dataclass
class _Event:
    request_id: str
    payload: bytes
    deadline_ms: int


@dataclass
class _State:
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    deadlines: dict[str, int] = field(default_factory=dict)  # request id -> deadline (ms)
    served: dict[str, float] = field(default_factory=dict)  # request id -> monotonic time
    init_errors: list[Any] = field(default_factory=list)
    next_calls: list[float] = field(default_factory=list)  # time.monotonic() of each GET next


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the runtime killed at the end of a test resets its connection


class FakeLambdaRuntime:
    """The Runtime API on a loopback port; freezes the runtime after each outcome."""

    def __init__(
        self, *, freeze: bool = True, on_response: Callable[[], Any] | None = None
    ) -> None:
        self.freeze = freeze
        self.on_response = on_response
        self.state = _State()
        self.cond = threading.Condition()
        self._events: queue.Queue[_Event] = queue.Queue()
        self._closed = threading.Event()
        self.proc: subprocess.Popen[bytes] | None = None
        self.frozen = False
        self.started_at = 0.0
        self.log_path: Path | None = None
        runtime = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("transfer-encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("content-length") or 0)
                return self.rfile.read(length) if length else b""

            def _send(
                self, status: int, body: bytes, headers: dict[str, str] | None = None
            ) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()

            def do_GET(self) -> None:
                if self.path != f"{PREFIX}/invocation/next":
                    self._send(404, b'{"errorMessage":"not found"}')
                    return
                with runtime.cond:
                    runtime.state.next_calls.append(time.monotonic())
                    runtime.cond.notify_all()
                while True:
                    try:
                        event = runtime._events.get(timeout=0.1)
                        break
                    except queue.Empty:
                        if runtime._closed.is_set():
                            return
                with runtime.cond:
                    runtime.state.served[event.request_id] = time.monotonic()
                self._send(
                    200,
                    event.payload,
                    {
                        "Lambda-Runtime-Aws-Request-Id": event.request_id,
                        "Lambda-Runtime-Deadline-Ms": str(event.deadline_ms),
                        "Lambda-Runtime-Invoked-Function-Arn": FUNCTION_ARN,
                        "Lambda-Runtime-Trace-Id": f"Root=1-{uuid.uuid4().hex[:8]}-0;Sampled=0",
                    },
                )

            def do_POST(self) -> None:
                raw = self._body()
                try:
                    body: Any = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                parts = self.path[len(PREFIX) :].strip("/").split("/")
                if parts == ["init", "error"]:
                    with runtime.cond:
                        runtime.state.init_errors.append(body)
                        runtime.cond.notify_all()
                    self._send(202, b'{"status":"OK"}')
                    return
                if (
                    len(parts) != 3
                    or parts[0] != "invocation"
                    or parts[2]
                    not in (
                        "response",
                        "error",
                    )
                ):
                    self._send(404, b'{"errorMessage":"not found"}')
                    return
                outcome = Outcome(parts[1], parts[2], body, dict(self.headers))
                outcome.received = time.monotonic()
                outcome.received_ms = int(time.time() * 1000)
                outcome.deadline_ms = runtime.state.deadlines.get(outcome.request_id, 0)
                outcome.served = runtime.state.served.get(outcome.request_id, 0.0)
                if runtime.on_response is not None:
                    outcome.snapshot = runtime.on_response()
                # Lambda freezes the sandbox once the outcome is posted: nothing of the
                # runtime runs from here until the next event (not even to read the 202)
                runtime._stop()
                with runtime.cond:
                    runtime.state.outcomes[outcome.request_id] = outcome
                    runtime.cond.notify_all()
                self._send(202, b'{"status":"OK"}')

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.address = f"127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    # -- the runtime process -------------------------------------------------------------

    def start(
        self, handler: str, *, env: dict[str, str], cwd: Path, log: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``python -m awslambdaric <handler>`` in its own process group."""
        self.log_path = log or (cwd / "runtime.log")
        out = self.log_path.open("wb")
        full_env = {**env, "AWS_LAMBDA_RUNTIME_API": self.address}
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "awslambdaric", handler],
            env=full_env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the freeze stops all of it
        )
        out.close()
        return self.proc

    def log(self) -> str:
        """What the runtime printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def _stop(self) -> None:
        if self.freeze and self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGSTOP)
            self.frozen = True

    def _wait_stopped(self) -> None:
        """Block until the runtime process reports stopped (``waitpid`` with WUNTRACED)."""
        assert self.proc is not None
        _, status = os.waitpid(self.proc.pid, os.WUNTRACED)
        if not os.WIFSTOPPED(status):
            self.proc.returncode = os.waitstatus_to_exitcode(status)
            raise AssertionError(f"the runtime exited:\n{self.log()}")

    def thaw(self) -> None:
        """SIGCONT the runtime's process group (what Lambda does before the next event)."""
        if self.frozen and self.proc is not None and self.proc.poll() is None:
            self.frozen = False
            os.killpg(self.proc.pid, signal.SIGCONT)

    # -- invocations -----------------------------------------------------------------------

    def wait_next_call(self, count: int = 1, timeout: float = 30.0) -> float:
        """Wait until the runtime has asked for its ``count``-th event; its monotonic time."""
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.state.next_calls) >= count, timeout)
        if not ok:
            raise AssertionError(f"no request for event {count}:\n{self.log()}")
        return self.state.next_calls[count - 1]

    def wait_init_error(self, timeout: float = 30.0) -> Any:
        """Wait for the runtime to report a failed initialisation; the error it posted."""
        with self.cond:
            ok = self.cond.wait_for(lambda: bool(self.state.init_errors), timeout)
        if not ok:
            raise AssertionError(f"no init error:\n{self.log()}")
        return self.state.init_errors[0]

    def invoke(self, event: Any, *, timeout_ms: int = 30_000, wait: float = 60.0) -> Outcome:
        """Thaw the runtime, hand it ``event`` and return its outcome once it is frozen."""
        request_id = str(uuid.uuid4())
        deadline_ms = int(time.time() * 1000) + timeout_ms
        with self.cond:
            self.state.deadlines[request_id] = deadline_ms
        self.thaw()
        self._events.put(_Event(request_id, json.dumps(event).encode(), deadline_ms))
        with self.cond:
            ok = self.cond.wait_for(
                lambda: (
                    request_id in self.state.outcomes
                    or (self.proc is not None and self.proc.poll() is not None)
                ),
                wait,
            )
        if not ok or request_id not in self.state.outcomes:
            raise AssertionError(f"no outcome for {request_id}:\n{self.log()}")
        if self.freeze:
            self._wait_stopped()
        return self.state.outcomes[request_id]

    def close(self) -> None:
        """Kill the runtime's process group and stop serving."""
        self._closed.set()
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGCONT)
            with contextlib.suppress(Exception):
                self.proc.wait(10)
        self.httpd.shutdown()
        self.httpd.server_close()

"""The real AWS Lambda runtime interface client, frozen after every response as Lambda does.

``python -m awslambdaric app.handler`` (tests/serverless/function/app.py: one wrapped
OpenAI call per invocation, each in its own conversation, over tests/helpers/fake_openai.py)
runs against the loopback Runtime API of tests/helpers/fake_lambda_runtime.py, which stops
the runtime's process group (SIGSTOP) the moment an invocation's outcome arrives, and
continues it (SIGCONT) only to hand over the next event. ``outcome.snapshot`` is what the
loopback ingest endpoint (the capture server) had received at that moment: what was
delivered before the freeze. Everything waits on the emulator's events, never on time.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.capture_server import CaptureServer, Reply
from helpers.fake_lambda_runtime import FakeLambdaRuntime, Outcome

pytest.importorskip("awslambdaric")
pytest.importorskip("openai")

pytestmark = pytest.mark.slow

FUNCTION = Path(__file__).parent / "function"
SRC = Path(__file__).parents[2] / "src"


@pytest.fixture(scope="module")
def openai_url() -> Iterator[str]:
    from helpers.fake_openai import FakeOpenAI

    with FakeOpenAI(default_text="Paris.").serve() as base_url:
        yield base_url


def delivered(server: CaptureServer) -> dict[str, list[str]]:
    """Conversation -> the message types the ingest endpoint accepted, in order."""
    with server.lock:
        requests = list(server.requests)
    out: dict[str, list[str]] = {}
    for body in requests:
        kinds = out.setdefault(body["externalConversationId"], [])
        kinds += [m.get("messageType") or m.get("role") for m in body["messages"]]
    return out


Start = Callable[..., FakeLambdaRuntime]


@pytest.fixture
def start_runtime(
    capture_server: CaptureServer, openai_url: str, tmp_path: Path
) -> Iterator[Start]:
    """Start the function in the real runtime; every runtime is killed at the end."""
    runtimes: list[FakeLambdaRuntime] = []

    def start(handler: str = "app.handler", **env: str) -> FakeLambdaRuntime:
        runtime = FakeLambdaRuntime(on_response=lambda: delivered(capture_server))
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("GREENFLASH_", "OPENAI_", "AWS_", "K_SERVICE", "VERCEL"))
        }
        base.update(
            PYTHONPATH=str(SRC),
            GREENFLASH_BASE_URL=capture_server.base_url,
            OPENAI_BASE_URL=openai_url,
            OPENAI_API_KEY="sk-test-not-a-real-key",
            AWS_LAMBDA_FUNCTION_NAME="gf-test",
            TMPDIR=str(tmp_path),  # the default spool: $TMPDIR/greenflash-spool
            PYTHONDONTWRITEBYTECODE="1",
        )
        base.update(env)
        runtime.start(handler, env=base, cwd=FUNCTION, log=tmp_path / f"runtime{len(runtimes)}.log")
        runtimes.append(runtime)
        return runtime

    yield start
    for runtime in runtimes:
        runtime.close()


def ask(runtime: FakeLambdaRuntime, conversation: str, **event: Any) -> Outcome:
    return runtime.invoke({"conversation": conversation, "question": "Capital of France?", **event})


def children(pid: int) -> list[str]:
    """The child processes of ``pid`` (every thread's)."""
    found: list[str] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += (task / "children").read_text().split()
    return found


ANSWERED = ["user", "assistant"]  # one wrapped chat call: the question and the answer


def test_automatic_every_invocation_is_delivered_before_the_freeze(start_runtime: Start):
    runtime = start_runtime()
    asked: list[str] = []
    for i in range(6):
        conversation = f"auto-{i}"
        raises = "the handler failed" if i == 3 else None
        outcome = ask(runtime, conversation, **({"raise": raises} if raises else {}))
        asked.append(conversation)
        # delivered before the runtime posted the outcome, i.e. before the freeze
        assert sorted(outcome.snapshot) == sorted(asked), (i, runtime.log())
        assert all(outcome.snapshot[c] == ANSWERED for c in asked), outcome.snapshot
        assert outcome.in_time
        if raises:
            assert outcome.kind == "error"
            assert (outcome.body["errorType"], outcome.body["errorMessage"]) == (
                "RuntimeError",
                raises,
            )
        else:
            assert outcome.kind == "response", outcome.body
            assert outcome.body["answer"] == "Paris."
        if i == 0:
            # the cold start: sending is in-process, no sender child was spawned
            assert children(outcome.body["pid"]) == []
    assert runtime.proc is not None
    assert children(runtime.proc.pid) == []


def test_decorator_alone_delivers_before_the_freeze(start_runtime: Start):
    # the automatic mode off: only @gf.serverless delivers (over a sender process, the
    # default off serverless platforms)
    runtime = start_runtime("app.decorated", GREENFLASH_SERVERLESS="false")
    asked: list[str] = []
    for i in range(4):
        conversation = f"decorated-{i}"
        raises = "the decorated handler failed" if i == 2 else None
        outcome = ask(runtime, conversation, **({"raise": raises} if raises else {}))
        asked.append(conversation)
        assert sorted(outcome.snapshot) == sorted(asked), (i, runtime.log())
        assert all(outcome.snapshot[c] == ANSWERED for c in asked), outcome.snapshot
        if raises:
            # the handler's own exception, its traceback ending where it was raised
            assert outcome.kind == "error"
            assert outcome.body["errorMessage"] == raises
            assert 'raise RuntimeError(event["raise"])' in outcome.body["stackTrace"][-1]
        else:
            assert outcome.kind == "response"


def test_automatic_mode_off_loses_the_invocation_to_the_freeze(start_runtime: Start):
    """The control: without the patch nor the decorator the freeze holds the batch (this
    is what issue 26 saw), so the tests above can fail."""
    runtime = start_runtime(GREENFLASH_SERVERLESS="false")
    outcome = ask(runtime, "unprotected")
    assert outcome.kind == "response"
    assert outcome.snapshot == {}


def spool_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "greenflash-spool").glob("*.json"))


def hold_first_request_of(server: CaptureServer, conversation: str) -> threading.Event:
    """The ingest endpoint holds its answer to ``conversation``'s first request (a 503,
    until the test ends), and answers everything else at once. Set when it was held."""
    held = threading.Event()

    def responder(body: dict[str, Any]) -> Reply | None:
        if body.get("externalConversationId") == conversation and not held.is_set():
            held.set()
            return Reply(503, delay=60)
        return None

    server.responder = responder
    return held


def test_a_deadline_shorter_than_the_answer_spools_then_delivers_next_invocation(
    start_runtime: Start, capture_server: CaptureServer, tmp_path: Path
):
    runtime = start_runtime()
    first = ask(runtime, "before")
    assert sorted(first.snapshot) == ["before"]

    held = hold_first_request_of(capture_server, "held")
    late = runtime.invoke(
        {"conversation": "held", "question": "Capital of France?"}, timeout_ms=1000
    )
    assert held.is_set()
    assert late.kind == "response"
    assert late.in_time, (late.received_ms, late.deadline_ms)  # the flush stopped in time
    assert "held" not in late.snapshot
    # ... and what it could not deliver waits in the spool (frozen now: nothing moves)
    (spooled,) = spool_files(tmp_path)
    assert stat.S_IMODE(spooled.stat().st_mode) == 0o600
    assert stat.S_IMODE(spooled.parent.stat().st_mode) == 0o700
    body = json.loads(spooled.read_bytes())
    assert body["externalConversationId"] == "held"
    assert [m.get("messageType") or m.get("role") for m in body["messages"]] == ANSWERED

    # the next invocation resends it before its own response
    after = ask(runtime, "after")
    assert after.snapshot["held"] == ANSWERED
    assert after.snapshot["after"] == ANSWERED
    assert spool_files(tmp_path) == []
    # counted: stats() as the third invocation began
    stats = ask(runtime, "counted").body["stats"]
    assert (stats["spooled"], stats["unspooled"]) == (2, 2)
    assert stats["dropped"] == 0


def test_a_cold_start_resends_what_the_previous_process_spooled(
    start_runtime: Start, capture_server: CaptureServer, tmp_path: Path
):
    first = start_runtime()
    ask(first, "warm")  # the first call's imports take longer than the deadline below
    hold_first_request_of(capture_server, "lost-with-the-sandbox")
    late = first.invoke(
        {"conversation": "lost-with-the-sandbox", "question": "Capital of France?"},
        timeout_ms=800,
    )
    assert late.in_time
    assert len(spool_files(tmp_path)) == 1
    first.close()  # the frozen runtime is killed; /tmp stays, as in a Lambda sandbox

    second = start_runtime()
    outcome = ask(second, "fresh")
    # the cold start resent the spool: delivered before the first response
    assert outcome.snapshot["lost-with-the-sandbox"] == ANSWERED
    assert outcome.snapshot["fresh"] == ANSWERED
    assert spool_files(tmp_path) == []


def test_a_failed_initialisation_is_reported_as_the_function_raised_it(start_runtime: Start):
    runtime = start_runtime("broken.handler")
    error = runtime.wait_init_error()
    assert error["errorType"] in ("LookupError", "Runtime.ImportModuleError")  # 4.x, older
    assert "no such table: settings" in error["errorMessage"]
    assert runtime.proc is not None
    assert runtime.proc.wait(30) != 0  # the runtime exits, as it does without us

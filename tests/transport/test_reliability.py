"""The uploader's reliability promises, against a REAL loopback HTTP server.

The promises are docs/DESIGN.md section 6 (delivery policy); the numbers in test names are
stable labels that closing notes cite. Retry budgets and backoffs are made small through
settings, so nothing waits long.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import gf_integrations as gf
from gf_integrations.core.context import Conv
from gf_integrations.core.events import LLMCall, ToolResult, UserInput
from gf_integrations.core.ids import sample_fraction, stable_id
from helpers.capture_server import Reply
from helpers.servers import run_python, server_down, server_up, wait_until

HELPERS = Path(__file__).parents[1] / "helpers"
FAST = {"max_backoff": 0.05, "retry_budget": 10.0, "request_timeout": 2.0}


def conv(cid: str = "c1", user: str = "u1") -> Conv:
    return Conv(cid, user)


def user_msg(c: Conv, key: str, text: str | None = None) -> UserInput:
    return UserInput(c, key, text if text is not None else f"text {key}")


def ids_of(messages: list[dict]) -> list[str]:
    return [m["externalMessageId"] for m in messages]


# -- load held ----------------------------------------------------------------------------


def test_01_burst_larger_than_queue_never_blocks_and_counts_drops(
    make_client, capture_server, caplog
):
    capture_server.default = Reply(delay=30)  # hung until released
    client = make_client(max_queue_size=100, max_batch_messages=50, **FAST)
    c = conv()
    client.record(user_msg(c, "first"))
    client.flush(0.01)  # urge the first batch out; the server now holds the worker
    assert capture_server.wait_for(lambda s: len(s.attempts) == 1, 5)
    caplog.set_level(logging.WARNING, logger="gf_integrations")

    slowest = 0.0
    accepted = 0
    burst_start = time.perf_counter()
    for i in range(1_000):
        t0 = time.perf_counter()
        accepted += client.record(user_msg(c, f"b{i}"))
        slowest = max(slowest, time.perf_counter() - t0)
    per_call = (time.perf_counter() - burst_start) / 1_000

    # exactly the capacity: it bounds everything held, the message in flight included
    assert accepted == 99
    stats = client.stats()
    assert stats["dropped_queue_full"] == 901
    assert stats["dropped"] >= 901
    # never blocks on the hung server (30 s); generous bounds for a loaded CI machine
    assert per_call < 0.005, f"{per_call * 1000:.2f} ms per record"
    assert slowest < 0.5, f"record blocked for {slowest * 1000:.1f} ms"
    full_logs = [r for r in caplog.records if "queue full" in r.getMessage()]
    assert len(full_logs) == 1

    capture_server.default = Reply()
    capture_server.release.set()
    assert client.flush(10)
    assert len(set(ids_of(capture_server.messages))) == 100


def test_02_batch_size_trigger_sends_before_a_long_interval(make_client, capture_server):
    client = make_client(flush_interval=30.0, max_batch_messages=10)
    c = conv()
    for i in range(10):
        client.record(user_msg(c, f"k{i}"))
    # no flush(): the full batch must go on its own, long before the 30 s interval
    assert capture_server.wait_for(lambda s: len(s.requests) == 1, 2.0)
    assert len(capture_server.requests[0]["messages"]) == 10


def test_03_interval_trigger_sends_a_single_message(make_client, capture_server):
    client = make_client(flush_interval=0.3)
    start = time.monotonic()
    client.record(user_msg(conv(), "only"))
    assert capture_server.wait_for(lambda s: len(s.requests) == 1, 5.0)
    assert time.monotonic() - start >= 0.25  # it waited for the interval


def test_04_byte_cap_splits_batches_and_oversize_is_shrunk_or_dropped(
    make_client, capture_server, caplog
):
    caplog.set_level(logging.WARNING, logger="gf_integrations")
    client = make_client(max_batch_bytes=4_000, max_message_bytes=2_000, flush_interval=5)
    c = conv()
    for i in range(30):
        client.record(user_msg(c, f"k{i}", f"{i:03d} " + "x" * 500))
    # one message too big: shrunk with a visible marker
    client.record(user_msg(c, "big", "B" * 10_000))
    # one that cannot be shrunk (the tool name is not cut): dropped, logged without payload
    client.record(ToolResult(c, "tool", "PAYLOADNAME" * 300, "tc1", output="PAYLOADTEXT"))
    assert client.flush(10)
    sizes = [int(h["Content-Length"]) for h in capture_server.headers]
    assert all(size <= 4_000 for size in sizes), sizes
    assert len(sizes) >= 5  # 30 x ~560 bytes cannot fit in fewer 4 kB bodies
    texts = [m["content"] for m in capture_server.messages]
    assert sum(t.endswith("x" * 500) for t in texts) == 30
    big = [t for t in texts if t.startswith("BBB")]
    assert len(big) == 1
    assert "[truncated: message exceeded 2000 bytes]" in big[0]
    stats = client.stats()
    # the tool_call and its observation both carry the huge tool name
    assert stats["dropped_oversize"] == 2
    assert stats["shrunk_oversize"] == 1
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "dropped" in logged
    assert "PAYLOADNAME" not in logged
    assert "PAYLOADTEXT" not in logged


def test_05_eight_threads_by_1000_arrive_exactly_once(make_client, capture_server):
    client = make_client(flush_interval=0.05)

    def produce(t: int) -> None:
        c = conv(f"thread-{t}")
        for i in range(1_000):
            client.record(user_msg(c, f"{t}-{i}"))

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert client.flush(60)
    counts = collections.Counter(ids_of(capture_server.messages))
    assert len(counts) == 8_000
    assert set(counts.values()) == {1}
    expected = {
        stable_id(conv(f"thread-{t}").key, "user", f"{t}-{i}")
        for t in range(8)
        for i in range(1_000)
    }
    assert set(counts) == expected
    stats = client.stats()
    assert stats["queued"] == 8_000
    assert stats["sent"] == 8_000
    assert stats["dropped"] == 0


# -- faults survived ------------------------------------------------------------------------


def test_06_server_down_then_up_loses_nothing(make_client, capture_server):
    client = make_client(max_backoff=0.1, retry_budget=20.0, request_timeout=1.0)
    server_down(capture_server)
    c = conv()
    for i in range(20):
        client.record(user_msg(c, f"k{i}"))
    assert not client.flush(0.3)  # cannot deliver while down, and returns in time
    assert wait_until(lambda: client.stats()["retried"] >= 2, 10)
    server_up(capture_server)
    assert client.flush(15)
    assert sorted(ids_of(capture_server.messages)) == sorted(
        stable_id(c.key, "user", f"k{i}") for i in range(20)
    )
    assert client.stats()["dropped"] == 0


def test_07_429_retry_after_is_honoured(make_client, capture_server):
    capture_server.script = [Reply(429, headers={"Retry-After": "1"})]
    client = make_client(**FAST)
    client.record(user_msg(conv(), "k"))
    start = time.monotonic()
    assert client.flush(10)
    assert time.monotonic() - start >= 0.95  # waited the server's second, not 50 ms
    assert len(capture_server.attempts) == 2
    assert len(capture_server.messages) == 1
    assert client.stats()["retried"] == 1


def test_07_retry_after_ms_is_preferred(make_client, capture_server):
    capture_server.script = [Reply(429, headers={"retry-after-ms": "300", "Retry-After": "30"})]
    client = make_client(**FAST)
    client.record(user_msg(conv(), "k"))
    start = time.monotonic()
    assert client.flush(10)
    assert 0.25 <= time.monotonic() - start < 5


def test_08_500_burst_of_six_faults_loses_nothing_and_resends_identical_bodies(
    make_client, capture_server
):
    capture_server.script = [Reply(s) for s in (500, 502, 503, 504, 500, 503)]
    client = make_client(**FAST)
    c = conv()
    for i in range(5):
        client.record(user_msg(c, f"k{i}"))
    assert client.flush(15)
    assert len(capture_server.attempts) == 7
    first = capture_server.attempts[0]
    assert all(a == first for a in capture_server.attempts)  # same body, same ids
    assert len(capture_server.messages) == 5
    assert client.stats()["retried"] == 6


@pytest.mark.parametrize("status", [400, 401, 413, 422])
def test_09_client_errors_drop_the_batch_with_one_clean_log_line(
    make_client, capture_server, caplog, status
):
    key = "sk-test-SECRETKEY-0123456789abcdef"
    marker = "PAYLOAD-MARKER-7f3a"
    capture_server.default = Reply(
        status,
        body={
            "error": "Validation failed",
            "details": [{"path": ["messages", 0, "content"], "message": "bad", "received": marker}],
        },
    )
    caplog.set_level(logging.DEBUG, logger="gf_integrations")
    client = make_client(api_key=key, **FAST)
    client.record(user_msg(conv(), "k", f"hello {marker}"))
    assert client.flush(5) is False
    assert len(capture_server.attempts) == 1  # no retry
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    line = errors[0].getMessage()
    assert str(status) in line
    assert "Validation failed" in line
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert marker not in everything
    assert key not in everything
    assert "SECRETKEY" not in everything
    assert client.stats()["dropped_fatal"] == 1


def test_10_timeouts_are_retried_with_the_same_body(make_client, capture_server):
    capture_server.script = [Reply(delay=3)]  # longer than the request timeout
    client = make_client(max_backoff=0.05, retry_budget=10, request_timeout=0.3)
    client.record(user_msg(conv(), "k"))
    assert client.flush(10)
    assert len(capture_server.attempts) == 2
    assert capture_server.attempts[0] == capture_server.attempts[1]


def test_11_connection_reset_is_retried(make_client, capture_server):
    capture_server.script = [Reply(close=True)]
    client = make_client(**FAST)
    client.record(user_msg(conv(), "k"))
    assert client.flush(10)
    assert len(capture_server.messages) == 1


def test_12_slow_server_flush_returns_by_its_deadline(make_client, capture_server, caplog):
    caplog.set_level(logging.INFO, logger="gf_integrations")
    capture_server.default = Reply(delay=10)
    client = make_client(
        request_timeout=30, **{k: v for k, v in FAST.items() if k != "request_timeout"}
    )
    client.record(user_msg(conv(), "k"))
    start = time.monotonic()
    assert client.flush(0.5) is False
    assert time.monotonic() - start < 1.5  # 0.5 s asked; the server would take 10 s
    assert any("flush timed out" in r.getMessage() for r in caplog.records)
    start = time.monotonic()
    client.shutdown(timeout=0.5)
    assert time.monotonic() - start < 1.5  # 0.5 s asked; the server would take 10 s


def test_12_shutdown_interrupts_a_retry_after_pause_and_spools(
    make_client, capture_server, tmp_path
):
    capture_server.default = Reply(503, headers={"Retry-After": "30"})
    client = make_client(spool_dir=str(tmp_path), retry_budget=120, max_retry_after=60)
    c = conv()
    client.record(user_msg(c, "k1"))
    client.flush(0.01)
    assert capture_server.wait_for(lambda s: len(s.attempts) == 1, 5)
    start = time.monotonic()
    client.shutdown(timeout=1.0)
    assert time.monotonic() - start < 2.5  # 1 s asked; Retry-After asked for 30 s
    assert client.stats()["spooled"] == 1
    assert len(list(tmp_path.glob("*.json"))) == 1
    assert capture_server.messages == []


# -- spool ------------------------------------------------------------------------------------


def test_spool_after_retry_budget_then_resent_once_by_the_next_client(
    make_client, capture_server, tmp_path
):
    capture_server.default = Reply(503)
    first = make_client(spool_dir=str(tmp_path), retry_budget=0.3, max_backoff=0.05)
    c = conv()
    for i in range(3):
        first.record(user_msg(c, f"k{i}"))
    assert first.flush(5) is False
    assert first.stats()["spooled"] == 3
    assert first.stats()["dropped"] == 0
    first.shutdown()
    assert len(list(tmp_path.glob("*.json"))) == 1

    capture_server.default = Reply()
    second = make_client(spool_dir=str(tmp_path))  # a "next start": no record() needed
    assert second.flush(10)
    assert second.stats()["unspooled"] == 3
    expected = sorted(stable_id(c.key, "user", f"k{i}") for i in range(3))
    assert sorted(ids_of(capture_server.messages)) == expected
    assert list(tmp_path.iterdir()) == []

    delivered = len(capture_server.requests)
    third = make_client(spool_dir=str(tmp_path))
    assert third.flush(5)
    assert len(capture_server.requests) == delivered  # nothing sent twice


def test_spooled_batches_are_resent_when_the_server_comes_back_in_the_same_run(
    make_client, capture_server, tmp_path
):
    server_down(capture_server)
    client = make_client(
        spool_dir=str(tmp_path), retry_budget=0.2, max_backoff=0.05, request_timeout=0.5
    )
    c = conv()
    client.record(user_msg(c, "lost-while-down"))
    assert client.flush(5) is False
    assert client.stats()["spooled"] == 1
    server_up(capture_server)
    client.record(user_msg(c, "after"))
    assert client.flush(10)
    assert wait_until(lambda: len(capture_server.messages) == 2, 5)
    assert list(tmp_path.glob("*.json")) == []


# -- bad inputs / config ------------------------------------------------------------------------


def test_14_unserializable_payloads_are_coerced_and_the_worker_lives_on(
    make_client, capture_server
):
    client = make_client()
    c = conv()
    cyclic: dict = {"a": {1, 2}, "b": b"\xff\x00", "when": time}
    cyclic["self"] = cyclic
    client.record(ToolResult(c, "t", "tool", "tc", input=cyclic, output=float("nan")))

    def boom() -> list:
        raise RuntimeError("lazy failed")

    client.record(LLMCall(c, "bad", messages=boom, reply=None))
    client.record(user_msg(c, "after"))
    assert client.flush(5) is False  # one event could not be delivered: flush says so
    kinds = [m.get("messageType") or m.get("role") for m in capture_server.messages]
    assert kinds == ["tool_call", "observation", "user"]
    assert client.stats()["failed_mapping"] == 1
    client.record(user_msg(c, "later"))
    assert client.flush(5)  # the verdict covers what was queued since the last flush


# -- process exit -----------------------------------------------------------------------------


def _run_exit_script(base_url: str, n: int, budget: float, *extra: str) -> tuple[float, str]:
    script = [str(HELPERS / "exit_script.py"), base_url, str(n), str(budget), *extra]
    out, err, ended = run_python(script, str(Path(__file__).parents[2] / "src"))
    recorded = float(out.split()[1])
    return ended - recorded, err


@pytest.mark.slow
def test_18_subprocess_exiting_without_flush_delivers_everything(capture_server):
    _, err = _run_exit_script(capture_server.base_url, 50, 5.0)
    assert "Traceback" not in err
    contents = sorted(m["content"] for m in capture_server.messages)
    assert contents == sorted(f"message {i}" for i in range(50))


@pytest.mark.slow
def test_19_subprocess_facing_a_hung_server_exits_within_the_budget(capture_server, tmp_path):
    capture_server.default = Reply(delay=60)
    exit_time, err = _run_exit_script(capture_server.base_url, 20, 1.0, str(tmp_path))
    assert exit_time < 1.0 + 1.0, f"exit took {exit_time:.2f} s"
    assert "Traceback" not in err
    # the hung batch was handed to the spool
    spooled = list(tmp_path.glob("*.json"))
    assert len(spooled) == 1
    assert len(json.loads(spooled[0].read_bytes())["messages"]) == 20


@pytest.mark.slow
def test_19_exit_is_one_bounded_pass_over_every_client(capture_server):
    capture_server.default = Reply(delay=60)
    exit_time, err = _run_exit_script(capture_server.base_url, 5, 1.0, "-", "4")
    assert exit_time < 1.0 + 1.0, f"exit took {exit_time:.2f} s for 4 clients"
    assert "Traceback" not in err


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_24_collected_uploader_then_fork_leaves_stderr_clean():
    code = (
        "import gc, os, weakref, gf_integrations as gf\n"
        "c = gf.GreenflashClient(base_url='http://127.0.0.1:9')\n"
        "used = gf.GreenflashClient(base_url='http://127.0.0.1:9', retry_budget=0)\n"
        "used.shutdown(0.5)\n"
        "refs = [weakref.ref(c.uploader), weakref.ref(used.uploader)]\n"
        "del c, used\n"
        "gc.collect()\n"
        "assert [r() for r in refs] == [None, None], 'uploader not collectable'\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os._exit(0)\n"
        "assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2] / "src"))
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_20_thread_start_failing_never_raises(make_client, capture_server, monkeypatch):
    client = make_client()

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't create new thread at interpreter shutdown")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    assert client.record(user_msg(conv(), "k")) is False
    assert client.flush(0.2) in (True, False)
    client.shutdown(0.2)
    monkeypatch.undo()
    assert capture_server.attempts == []
    assert client.stats()["dropped_shutdown"] == 1


def test_21_emits_after_shutdown_are_dropped_and_counted(make_client, capture_server):
    client = make_client()
    client.record(user_msg(conv(), "before"))
    client.shutdown()
    client.shutdown()  # idempotent
    assert client.record(user_msg(conv(), "after")) is False
    assert client.stats()["dropped_shutdown"] == 1
    assert [m["content"] for m in capture_server.messages] == ["text before"]
    assert client.flush(0.2)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_an_exporter_raising_system_exit_loses_nothing_and_a_dead_worker_restarts(
    make_client, capture_server
):
    class DiesOnce:
        """An exporter whose first export raises SystemExit."""

        def __init__(self, inner) -> None:
            self.inner, self.calls = inner, 0

        def export(self, payload: bytes, *, timeout: float):
            self.calls += 1
            if self.calls == 1:
                raise SystemExit
            return self.inner.export(payload, timeout=timeout)

        def shutdown(self) -> None:
            self.inner.shutdown()

    from gf_integrations.transport import HTTPExporter

    client = make_client(exporter=DiesOnce(HTTPExporter(capture_server.base_url, None)), **FAST)
    client.record(user_msg(conv(), "k1"))
    assert client.flush(5)  # the SystemExit was a failed attempt: retried, delivered
    assert client.stats()["retried"] == 1

    # a worker killed by a BaseException (here: from inside prepare) is restarted
    up = client.uploader
    first_thread = up.worker.thread

    def die(stopping: bool) -> bool:
        raise SystemExit

    up.worker._turn = die
    up.worker.wake()
    assert wait_until(lambda: not first_thread.is_alive(), 5)
    up.worker._turn = up._turn
    client.record(user_msg(conv(), "k2"))  # restarts the worker
    assert client.uploader.worker.thread is not first_thread
    assert client.flush(5)
    assert sorted(m["content"] for m in capture_server.messages) == ["text k1", "text k2"]


# -- fork -------------------------------------------------------------------------------------


def _fork_and_wait(child) -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            signal.alarm(15)  # a deadlocked child must not hang the suite
            code = 0 if child() else 2
        except BaseException:
            code = 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_22_fork_child_delivers_its_own_and_parent_is_not_duplicated(make_client, capture_server):
    client = make_client(flush_interval=5.0)
    c = conv()
    client.record(user_msg(c, "parent-before-fork"))
    assert wait_until(lambda: client.stats()["queue_size"] == 0, 5)  # now a pending batch

    def child() -> bool:
        if client.stats()["queued"] != 0:  # fresh counters
            return False
        client.record(user_msg(c, "child"))
        return client.flush(5)

    assert _fork_and_wait(child) == 0
    assert client.flush(5)
    contents = collections.Counter(m["content"] for m in capture_server.messages)
    assert contents == {"text parent-before-fork": 1, "text child": 1}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_23_fork_while_another_thread_holds_the_uploader_locks(make_client, capture_server):
    client = make_client()
    client.record(user_msg(conv(), "warm-up"))
    assert client.flush(5)
    up = client.uploader
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with up.worker.lock, up.gate.lock, up.exporter._lock, up.counters._lock:
            held.set()
            release.wait(20)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(5)
    try:

        def child() -> bool:
            client.record(user_msg(conv(), "from-child"))
            return client.flush(5)

        assert _fork_and_wait(child) == 0
    finally:
        release.set()
        holder.join()
    assert capture_server.wait_for(
        lambda s: any(m["content"] == "text from-child" for m in s.messages), 5
    )


# -- sampling ---------------------------------------------------------------------------------


def test_sampling_is_deterministic_by_conversation_and_force_sample_keeps(
    make_client, capture_server
):
    client = make_client(sample_rate=0.3)
    convs = [conv(f"s{i}") for i in range(200)]
    for c in convs:
        client.record(user_msg(c, "k"))
    with gf.conversation("forced", external_user_id="u1", force_sample=True):
        forced = client.resolve(fallback_conversation_id="x")
    client.record(user_msg(forced, "k"))
    assert client.flush(10)
    kept = {r["externalConversationId"] for r in capture_server.requests}
    expected = {c.external_conversation_id for c in convs if sample_fraction(c.key) < 0.3}
    assert kept == expected | {"forced"}
    assert 30 < len(expected) < 90  # the fraction is roughly honoured
    assert all("sampleRate" not in r for r in capture_server.requests)
    forced_body = next(
        r for r in capture_server.requests if r["externalConversationId"] == "forced"
    )
    assert forced_body["forceSample"] is True
    assert client.stats()["sampled_out"] == 200 - len(expected)

    # the same decision in a second client (another process would decide alike)
    again = make_client(sample_rate=0.3)
    assert [again.mapper.keep(c) for c in convs] == [
        c.external_conversation_id in expected for c in convs
    ]


def test_stats_expose_the_counters(make_client):
    stats = make_client().stats()
    for name in ("queued", "sent", "retried", "dropped", "spooled", "unspooled", "queue_size"):
        assert name in stats


def test_flush_reports_a_loss_that_happened_before_it_was_called(make_client, capture_server):
    capture_server.default = Reply(400, body={"error": "bad"})
    client = make_client(flush_interval=0.05)
    client.record(user_msg(conv(), "k"))
    assert wait_until(lambda: client.stats()["dropped_fatal"] == 1, 5)  # sent by the interval
    assert client.flush(1) is False  # what was queued since the last flush did not arrive
    assert client.flush(1) is True  # and it is reported once


def test_shutdown_with_a_hung_request_spools_the_inflight_batch_and_the_queue(
    make_client, capture_server, tmp_path
):
    capture_server.default = Reply(delay=30)
    client = make_client(spool_dir=str(tmp_path), request_timeout=30, flush_interval=0.05)
    c = conv()
    client.record(user_msg(c, "in-flight"))
    assert capture_server.wait_for(lambda s: len(s.attempts) == 1, 5)  # worker now hung
    for i in range(5):
        client.record(user_msg(c, f"queued-{i}"))  # the worker cannot take these
    start = time.monotonic()
    client.shutdown(timeout=0.5)
    assert time.monotonic() - start < 1.5  # 0.5 s asked; the server hangs for 30 s
    spooled = [m for f in tmp_path.glob("*.json") for m in json.loads(f.read_bytes())["messages"]]
    assert sorted(m["content"] for m in spooled) == sorted(
        ["text in-flight"] + [f"text queued-{i}" for i in range(5)]
    )
    assert client.stats()["dropped"] == 0

    capture_server.default = Reply()
    capture_server.release.set()
    delivered_before = len(capture_server.messages)
    nxt = make_client(spool_dir=str(tmp_path))
    assert nxt.flush(10)
    assert wait_until(lambda: len(capture_server.messages) >= delivered_before + 6, 5)
    # the hung request may also have landed once released: ids make that harmless
    contents = collections.Counter(m["content"] for m in capture_server.messages)
    assert set(contents) == {"text in-flight"} | {f"text queued-{i}" for i in range(5)}
    assert all(contents[f"text queued-{i}"] == 1 for i in range(5))


def test_a_lazy_callable_raising_system_exit_loses_only_its_own_event(make_client, capture_server):
    client = make_client()
    c = conv()

    def leave() -> list:
        raise SystemExit(3)

    client.record(user_msg(c, "before"))
    client.record(LLMCall(c, "bad", messages=leave))
    client.record(user_msg(c, "after"))
    assert client.flush(5) is False  # one event was lost, and flush says so
    assert sorted(m["content"] for m in capture_server.messages) == ["text after", "text before"]
    assert client.uploader.worker.thread.is_alive()

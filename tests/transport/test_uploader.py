"""Uploader units: Retry-After parsing, the backoff schedule, the exporters.

The retry schedule is checked with a scripted exporter (a plug-in behind the Exporter
protocol) and a recording stand-in for the retry timer (it fires at once), so a schedule of
[0.5, 1, 2, 4, 8] seconds is verified without waiting it out.
"""

from __future__ import annotations

import email.utils
import json
import threading
import time

import httpx
import pytest

from gf_integrations import GreenflashClient
from gf_integrations.core.context import Conv
from gf_integrations.core.events import UserInput
from gf_integrations.core.wire import encode_json
from gf_integrations.transport import (
    ExportResult,
    HTTPExporter,
    InMemoryExporter,
    JSONLExporter,
    parse_retry_after,
)
from gf_integrations.transport.exporters import _error_detail
from gf_integrations.transport.retry import Action, RetryPolicy, Verdict

NOW = 1_700_000_000.0


def http_date(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after": "20"}, 20.0),
        ({"retry-after": " 2.5 "}, 2.5),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": "-10"}, None),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after": "100000"}, 100000.0),  # parsed; the uploader clamps it
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "30"}, 0.25),  # ms preferred
        ({"retry-after-ms": "junk", "retry-after": "3"}, 3.0),
        ({"retry-after-ms": "-5", "retry-after": "3"}, 3.0),
        ({"retry-after": http_date(NOW + 30)}, 30.0),
        ({"retry-after": http_date(NOW - 30)}, None),  # in the past
        ({"retry-after": "Wed, 99 Foo 2015 07:28:00 GMT"}, None),
    ],
)
def test_parse_retry_after(headers, expected):
    got = parse_retry_after(httpx.Headers(headers), now=NOW)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, abs=1.0)


class Scripted:
    """An exporter answering from a script of ExportResults (then success)."""

    def __init__(self, results: list[ExportResult]) -> None:
        self.results = list(results)
        self.payloads: list[bytes] = []
        self.timeouts: list[float] = []

    def export(self, payload: bytes, *, timeout: float) -> ExportResult:
        self.payloads.append(payload)
        self.timeouts.append(timeout)
        return self.results.pop(0) if self.results else ExportResult(True, status=200)

    def shutdown(self) -> None:
        pass


def client_with(exporter, monkeypatch, **settings) -> tuple[GreenflashClient, RecordingWaits]:
    """A client whose retry timers fire at once, recording the delays they were armed with."""
    monkeypatch.setattr("random.random", lambda: 0.0)  # no jitter: exact schedule
    client = GreenflashClient(base_url="http://127.0.0.1:9", exporter=exporter, **settings)
    delivery = client.uploader.delivery
    waits = RecordingWaits(delivery.policy)
    delivery.policy = waits
    return client, waits


class RecordingWaits:
    """A retry policy that decides as the real one, records the delays and waits none."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.waits: list[float] = []

    def decide(self, result, attempt, **context) -> Verdict:
        verdict = self.policy.decide(result, attempt, **context)
        if verdict.action not in (Action.RETRY, Action.PAUSE):
            return verdict
        self.waits.append(verdict.delay)
        return Verdict(verdict.action, 0.0)


def record_one(client: GreenflashClient, key: str = "k") -> None:
    client.record(UserInput(Conv("c", "u"), key, "hello"))


def test_backoff_schedule_is_exponential_and_capped(monkeypatch):
    fail = ExportResult(False, retryable=True, status=503)
    exporter = Scripted([fail] * 6)
    client, waits = client_with(exporter, monkeypatch, max_backoff=4.0, retry_budget=1000)
    record_one(client)
    assert client.flush(5)
    assert waits.waits == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert len(set(exporter.payloads)) == 1  # every retry resends the identical body
    client.shutdown(1)


def test_retry_after_is_a_clamped_minimum(monkeypatch):
    results = [
        ExportResult(False, retryable=True, status=429, retry_after=5.0),
        ExportResult(False, retryable=True, status=429, retry_after=0.1),  # backoff wins
        ExportResult(False, retryable=True, status=429, retry_after=100_000.0),  # clamped
    ]
    exporter = Scripted(results)
    client, waits = client_with(exporter, monkeypatch, max_retry_after=30, retry_budget=1000)
    record_one(client)
    assert client.flush(5)
    assert waits.waits == [5.0, 1.0, 30.0]
    client.shutdown(1)


def test_a_backoff_beyond_the_budget_gives_up_without_sleeping(monkeypatch, caplog):
    exporter = Scripted([ExportResult(False, retryable=True, status=429, retry_after=50.0)])
    client, waits = client_with(exporter, monkeypatch, retry_budget=10)
    record_one(client)
    assert client.flush(5) is False
    assert waits.waits == []
    assert client.stats()["dropped_retries"] == 1
    assert "Set spool_dir" in caplog.text
    client.shutdown(1)


def test_non_retryable_results_are_not_retried(monkeypatch):
    exporter = Scripted([ExportResult(False, retryable=False, status=422, detail="bad")])
    client, waits = client_with(exporter, monkeypatch)
    record_one(client)
    assert client.flush(5) is False
    assert len(exporter.payloads) == 1
    assert waits.waits == []
    assert client.stats()["dropped_fatal"] == 1
    client.shutdown(1)


def test_an_exporter_that_raises_is_retried_not_fatal(monkeypatch):
    class Flaky(Scripted):
        def export(self, payload: bytes, *, timeout: float) -> ExportResult:
            if not self.payloads:
                self.payloads.append(payload)
                raise OSError("disk full")
            return super().export(payload, timeout=timeout)

    client, waits = client_with(Flaky([]), monkeypatch)
    record_one(client)
    assert client.flush(5)
    assert waits.waits == [0.5]
    client.shutdown(1)


def test_request_timeout_is_bounded_by_the_shutdown_deadline(monkeypatch):
    started = threading.Event()
    release = threading.Event()

    class Hung(Scripted):
        def export(self, payload: bytes, *, timeout: float) -> ExportResult:
            self.timeouts.append(timeout)
            started.set()
            release.wait(timeout)
            return ExportResult(False, retryable=True, detail="timeout")

    exporter = Hung([])
    client = GreenflashClient(
        base_url="http://127.0.0.1:9", exporter=exporter, request_timeout=30, max_backoff=0.05
    )
    record_one(client)
    client.flush(0.01)
    assert started.wait(5)
    t0 = time.monotonic()
    client.shutdown(timeout=0.5)
    assert time.monotonic() - t0 < 1.5  # 0.5 s asked; the request timeout is 30 s
    release.set()
    assert exporter.timeouts[0] == 30  # before shutdown: the full request timeout


# -- exporters ---------------------------------------------------------------------------------


def test_http_exporter_classifies_statuses():
    def handler(request: httpx.Request) -> httpx.Response:
        code = int(request.headers["x-want"])
        headers = {"retry-after": "2"} if code == 429 else {}
        if code == 418:
            headers["x-should-retry"] = "true"
        return httpx.Response(code, json={"error": f"status {code}"}, headers=headers)

    results = {}
    for code in (200, 400, 401, 408, 409, 413, 418, 422, 429, 500, 503):
        exporter = HTTPExporter(
            "http://127.0.0.1:1/api/v1", "key", transport=httpx.MockTransport(handler)
        )
        exporter._headers["x-want"] = str(code)
        results[code] = exporter.export(b"{}", timeout=1)
        exporter.shutdown()
    assert results[200].ok
    retryable = {c for c, r in results.items() if r.retryable}
    assert retryable == {408, 409, 418, 429, 500, 503}
    assert results[429].retry_after == 2.0
    assert results[400].detail == '{"error": "status 400"}'


def test_error_detail_leaves_out_echoed_payload_and_the_key():
    body = {
        "error": "Validation failed",
        "details": [{"path": ["messages", 0], "message": "bad", "received": "SECRET-DATA"}],
        "input": {"messages": ["SECRET-DATA"]},
    }
    detail = _error_detail(httpx.Response(400, json=body))
    assert "Validation failed" in detail
    assert "messages" in detail
    assert "SECRET-DATA" not in detail
    leaked = _error_detail(httpx.Response(401, json={"error": "bad key sk-abc"}), "sk-abc")
    assert "sk-abc" not in leaked
    html = _error_detail(
        httpx.Response(502, text="<html>gateway</html>", headers={"content-type": "text/html"})
    )
    assert html == ""


def test_connection_errors_are_retryable():
    exporter = HTTPExporter("http://127.0.0.1:9/api/v1", None)  # port 9: nothing listens
    result = exporter.export(b"{}", timeout=1)
    assert not result.ok
    assert result.retryable
    exporter.shutdown()


def test_in_memory_and_jsonl_exporters(tmp_path):
    mem = InMemoryExporter()
    client = GreenflashClient(exporter=mem, base_url="http://127.0.0.1:9")
    record_one(client)
    assert client.flush(5)
    assert [m["content"] for m in mem.messages] == ["hello"]

    path = tmp_path / "out.jsonl"
    client2 = GreenflashClient(exporter=JSONLExporter(path), base_url="http://127.0.0.1:9")
    record_one(client2, "k2")
    assert client2.flush(5)
    lines = path.read_text().splitlines()
    assert [json.loads(line)["messages"][0]["content"] for line in lines] == ["hello"]
    client.shutdown(1)
    client2.shutdown(1)


def test_encode_json_is_compact_and_survives_lone_surrogates():
    assert encode_json({"a": [1, "é"]}) == '{"a":[1,"é"]}'.encode()
    assert json.loads(encode_json({"a": "x\udc80y"})) == {"a": "x?y"}
    # NaN/inf never reach the wire as invalid JSON (the recorder turns them into strings
    # before this; anything that slips through becomes null)
    assert encode_json({"a": float("nan"), "b": float("inf")}) == b'{"a":null,"b":null}'


def test_encoded_messages_hold_only_their_own_bytes():
    # orjson 3.12+ returns its working buffer (>= 4 KB) unshrunk; every encoded message
    # waits in a batch, the backlog or the envelope cache, so it must be copied to size
    import tracemalloc

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [encode_json({"role": "user", "content": f"question {i}"}) for i in range(200)]
        per_message = (tracemalloc.get_traced_memory()[0] - before) / len(kept)
    finally:
        tracemalloc.stop()
    assert len(kept[0]) < 40
    assert per_message < 200, f"{per_message:.0f} bytes held per ~35-byte message"


def test_remembered_answers_are_not_traversed_by_full_collections():
    import gc

    from gf_integrations.core.targets import AnswerMap

    answers: AnswerMap[int] = AnswerMap(limit=3)
    conv = Conv("conv-1", "user-1", "org-1", "prod-1")
    for run in range(5):
        answers.put(run, conv, f"event-{run}")
    gc.collect()
    kept = [answers._map.get(run) for run in range(5)]
    assert kept[:2] == [None, None]  # bounded: the oldest are forgotten
    assert not any(gc.is_tracked(entry) for entry in kept[2:])
    ref = answers.get(4)
    assert ref is not None
    assert ref.conv == conv
    assert ref.key == "event-4"

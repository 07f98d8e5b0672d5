"""The retry policy alone: a pure function of an answer and the attempt, no threads."""

from __future__ import annotations

import pytest

from gf_integrations.transport import ExportResult
from gf_integrations.transport.retry import Action, RetryPolicy, Verdict, backoff_delay

POLICY = RetryPolicy(retry_budget=30.0, max_backoff=4.0, max_retry_after=60.0, jitter=lambda: 0.0)

OK = ExportResult(True, status=200)
BUSY = ExportResult(False, retryable=True, status=500)  # this batch, not the server
DOWN = ExportResult(False, retryable=True, status=503)
REFUSED = ExportResult(False, retryable=True, detail="connection error (ConnectError)")
TIMEOUT = ExportResult(False, retryable=True, detail="timeout (ReadTimeout)")
BAD = ExportResult(False, retryable=False, status=422, detail="bad")


def test_delivered_and_rejected_are_final():
    assert POLICY.decide(OK, 1) == Verdict(Action.DONE)
    assert POLICY.decide(BAD, 1) == Verdict(Action.REJECT)


def test_a_batch_error_retries_that_batch_with_exponential_capped_backoff():
    delays = [POLICY.decide(BUSY, attempt).delay for attempt in range(1, 7)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert {POLICY.decide(BUSY, a).action for a in range(1, 7)} == {Action.RETRY}


@pytest.mark.parametrize("result", [DOWN, REFUSED, TIMEOUT, ExportResult(False, True, 2.0, 500)])
def test_a_server_wide_answer_pauses_everything_on_the_shared_backoff(result):
    # 503, no answer at all, or any Retry-After: the server said no, not this batch
    first = POLICY.decide(result, 5, server_failures=0)
    assert first.action is Action.PAUSE
    assert first.delay == max(0.5, result.retry_after or 0)  # the server's count, not attempt 5
    assert POLICY.decide(result, 1, server_failures=3).delay == 4.0


def test_retry_after_is_a_minimum_clamped_to_max_retry_after():
    def after(seconds: float) -> ExportResult:
        return ExportResult(False, retryable=True, status=429, retry_after=seconds)

    assert POLICY.decide(after(5.0), 1).delay == 5.0
    assert POLICY.decide(after(0.1), 2, server_failures=1).delay == 1.0  # backoff wins
    assert POLICY.decide(after(1e6), 1, failing_for=0).action is Action.GIVE_UP  # 60 s > budget
    long = RetryPolicy(1000.0, 4.0, 60.0, jitter=lambda: 0.0)
    assert long.decide(after(1e6), 1).delay == 60.0


def test_the_budget_counts_from_the_first_failure():
    assert POLICY.decide(BUSY, 3, failing_for=27.0).action is Action.RETRY  # 27 + 2 <= 30
    assert POLICY.decide(BUSY, 3, failing_for=29.0).action is Action.GIVE_UP


def test_an_unreachable_server_keeps_the_batch_in_memory_unless_a_spool_can_take_it():
    assert POLICY.decide(REFUSED, 40, failing_for=1e4, can_spool=False).action is Action.PAUSE
    assert POLICY.decide(REFUSED, 40, failing_for=1e4, can_spool=True).action is Action.GIVE_UP
    # a server that answers (503) is not unreachable: the budget holds
    assert POLICY.decide(DOWN, 40, failing_for=1e4).action is Action.GIVE_UP


def test_a_deadline_shorter_than_the_wait_gives_up_now():
    assert POLICY.decide(BUSY, 1, time_left=0.4).action is Action.GIVE_UP
    assert POLICY.decide(BUSY, 1, time_left=0.6).action is Action.RETRY
    assert POLICY.decide(REFUSED, 1, time_left=0.1, can_spool=False).action is Action.GIVE_UP


def test_jitter_only_shortens_the_wait_by_up_to_a_quarter():
    assert backoff_delay(3, None, 4.0, 60.0, jitter=0.0) == 2.0
    assert backoff_delay(3, None, 4.0, 60.0, jitter=0.999) == pytest.approx(1.5005)
    assert 1.5 <= backoff_delay(3, None, 4.0, 60.0) <= 2.0

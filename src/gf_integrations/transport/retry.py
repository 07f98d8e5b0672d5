"""The retry policy, as a pure function of an answer and the attempt (docs/DESIGN.md
section 6): no threads, no clock, no state; the delivery applies what it decides."""

from __future__ import annotations

import dataclasses
import enum
import random
from collections.abc import Callable

from .exporters import ExportResult

# Statuses that mean the whole server said no (not this batch): pause all sending.
_SERVER_WIDE = frozenset({429, 503})


class Action(enum.Enum):
    """What to do with a batch after an answer."""

    DONE = "done"  # delivered
    REJECT = "reject"  # a final answer (4xx other than 408/409/429): drop, log once
    RETRY = "retry"  # send this batch again after ``delay``
    PAUSE = "pause"  # the server is down or busy: nothing is sent for ``delay``, then a probe
    GIVE_UP = "give_up"  # out of budget: spool it, or drop it


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """The policy's decision: an :class:`Action`, and how long to wait before resending."""

    action: Action
    delay: float = 0.0


def backoff_delay(
    attempt: int,
    retry_after: float | None,
    max_backoff: float,
    max_retry_after: float,
    jitter: float | None = None,
) -> float:
    """The wait before attempt ``attempt + 1``: capped, jittered exponential backoff; a
    server's ``Retry-After`` acts as a minimum, clamped to ``max_retry_after``. ``jitter``
    in [0, 1) (random when None). Shared by the uploader and ``gf-integrations upload``."""
    base: float = min(0.5 * 2.0 ** (attempt - 1), max_backoff)
    delay = base * (1 - 0.25 * (random.random() if jitter is None else jitter))
    if retry_after is not None:
        delay = max(delay, min(retry_after, max_retry_after))
    return delay


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Caps of the policy: the budget of one batch and the backoff limits."""

    retry_budget: float
    max_backoff: float
    max_retry_after: float
    jitter: Callable[[], float] | None = None  # in [0, 1); None: random.random()

    def decide(
        self,
        result: ExportResult,
        attempt: int,
        *,
        failing_for: float = 0.0,
        server_failures: int = 0,
        can_spool: bool = False,
        time_left: float | None = None,
    ) -> Verdict:
        """What to do after ``result``, the answer to attempt number ``attempt`` (1-based).

        Args:
            failing_for: seconds since the batch's first failed attempt (0 on the first).
            server_failures: consecutive server-wide failures before this one (they set the
                pause's backoff, shared by all batches).
            can_spool: a spool folder is set. Without one, a batch the server never
                answers waits in memory past its budget instead of being dropped.
            time_left: seconds to a flush/shutdown deadline, if one is running.
        """
        if result.ok:
            return Verdict(Action.DONE)
        if not result.retryable:
            return Verdict(Action.REJECT)
        # no answer at all (refused, reset, timed out): the server, not this batch
        unreachable = result.status is None and result.detail.startswith(("connection", "timeout"))
        server_wide = unreachable or result.status in _SERVER_WIDE or result.retry_after is not None
        nth = server_failures + 1 if server_wide else attempt
        delay = backoff_delay(
            nth,
            result.retry_after,
            self.max_backoff,
            self.max_retry_after,
            None if self.jitter is None else self.jitter(),
        )
        within_budget = failing_for + delay <= self.retry_budget
        if unreachable and not can_spool:
            within_budget = True  # kept in memory (bounded by max_queue_size) until it answers
        if not within_budget or (time_left is not None and delay > time_left):
            return Verdict(Action.GIVE_UP)
        return Verdict(Action.PAUSE if server_wide else Action.RETRY, delay)

"""The end of a serverless invocation: deliver what it recorded, within its deadline.

The one rule (docs/DESIGN.md section 6b), shared by the AWS Lambda runtime patch and the
``@gf.serverless`` decorator: flush every client, never past the invocation's deadline
minus :data:`MARGIN`, and for at most the timeout (default: the client's
``shutdown_timeout``); what is still undelivered then goes to the spool, which is resent
when the next invocation begins (:func:`begin`). Nothing here raises.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable

from ..client import GreenflashClient

# Kept free before the platform's deadline for what must follow the flush: writing the
# spool (a few small files) and the runtime posting the response. Lambda ends an
# invocation that is still running at its deadline, so a flush that took the whole budget
# would lose the response too.
MARGIN = 0.2
# How long the spooling may wait for the uploader's worker (part of MARGIN).
SPOOL_WAIT = 0.1


def budget(client: GreenflashClient, deadline: float | None, timeout: float | None) -> float:
    """Seconds the flush may take: the timeout (default ``shutdown_timeout``), cut to the
    deadline (epoch seconds) minus :data:`MARGIN`."""
    cap = client.settings.shutdown_timeout if timeout is None else timeout
    if deadline is None:
        return cap
    return min(cap, deadline - time.time() - MARGIN)


def deliver(
    clients: Iterable[GreenflashClient], *, deadline: float | None, timeout: float | None
) -> bool:
    """Flush each client within the rule; spool what remains. True when all arrived."""
    delivered = True
    for client in clients:
        try:
            seconds = budget(client, deadline, timeout)
            if seconds > 0 and client.flush(seconds):
                continue
            delivered = False
            client.spool_pending(SPOOL_WAIT)
        except Exception:
            delivered = False
    return delivered


def begin(clients: Iterable[GreenflashClient]) -> None:
    """An invocation begins: resend what an earlier one spooled (the flush at its end
    waits for it)."""
    for client in clients:
        with contextlib.suppress(Exception):
            client.resend_spool()

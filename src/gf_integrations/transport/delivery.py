"""What the transport is told: its caps, timings and spool folder.

The transport is the lowest floor: it ships the bytes it is handed and knows nothing of the
client's configuration. ``core.settings.Settings.delivery`` validates the user's options
and hands over this slice of them.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DeliverySettings:
    """Caps and timings of one uploader (see docs/DESIGN.md section 6 for the policy); the
    defaults and the checks are ``core.settings.Settings``'s."""

    max_queue_size: int
    max_batch_messages: int
    max_batch_bytes: int
    flush_interval: float
    request_timeout: float
    retry_budget: float
    max_backoff: float
    max_retry_after: float
    shutdown_timeout: float
    max_concurrent_requests: int
    spool_dir: str | None

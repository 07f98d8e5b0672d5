"""What the transport is told: its caps, timings and spool folder.

The transport is the lowest floor: it ships the bytes it is handed and knows nothing of the
client's configuration. ``core.settings.Settings.delivery`` validates the user's options
and hands over this slice of them.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DeliverySettings:
    """Caps and timings of one uploader (see docs/DESIGN.md section 6 for the policy)."""

    max_queue_size: int = 10_000
    max_batch_messages: int = 100
    max_batch_bytes: int = 1_000_000
    flush_interval: float = 0.5
    request_timeout: float = 10.0
    retry_budget: float = 60.0
    max_backoff: float = 10.0
    max_retry_after: float = 60.0
    shutdown_timeout: float = 5.0
    max_concurrent_requests: int = 8
    spool_dir: str | None = None

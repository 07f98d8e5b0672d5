"""Deterministic identifiers.

Every id we send is derived from stable inputs (conversation + framework id + kind),
so a retry, a resend from the spool or a resent chat history deduplicates on the
server instead of doubling.
"""

from __future__ import annotations

import hashlib
import uuid

_NAMESPACE = uuid.UUID("6f1d1c52-4b0e-5a6c-9d7e-67662d696e74")


def stable_id(*parts: object) -> str:
    """A uuid5 string over ``parts`` joined unambiguously."""
    joined = "\x1f".join("" if p is None else str(p) for p in parts)
    return str(uuid.uuid5(_NAMESPACE, joined))


def content_digest(text: str | None) -> str:
    """A short digest of message content, used in position-based message keys."""
    return hashlib.sha1((text or "").encode("utf-8", "surrogatepass")).hexdigest()[:16]


def sample_fraction(key: str) -> float:
    """Map a conversation key to a stable number in [0, 1) for sampling decisions."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def new_id() -> str:
    """A random id, for roots that have no stable framework id."""
    return str(uuid.uuid4())

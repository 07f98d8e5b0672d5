"""Deterministic identifiers.

Every id we send is derived from stable inputs (conversation + framework id + kind),
so a retry, a resend from the spool or a resent chat history deduplicates on the
server instead of doubling.
"""

from __future__ import annotations

import hashlib
import uuid

_NAMESPACE = uuid.UUID("6f1d1c52-4b0e-5a6c-9d7e-67662d696e74")


_NAMESPACE_BYTES = _NAMESPACE.bytes


def stable_id(*parts: object) -> str:
    """A uuid5 string over ``parts`` joined unambiguously.

    Same value as ``str(uuid.uuid5(namespace, joined))``, computed without building a
    ``uuid.UUID`` (this runs for every message on the worker).
    """
    try:
        joined = "\x1f".join(parts)  # type: ignore[arg-type]  # the common case: all str
    except TypeError:
        joined = "\x1f".join("" if p is None else str(p) for p in parts)
    digest = hashlib.sha1(
        _NAMESPACE_BYTES + joined.encode("utf-8", "surrogatepass"), usedforsecurity=False
    ).digest()
    # version 5 in the high nibble of byte 6, RFC 4122 variant in the top bits of byte 8
    h = (
        digest[:6]
        + bytes(((digest[6] & 0x0F) | 0x50, digest[7], (digest[8] & 0x3F) | 0x80))
        + digest[9:16]
    ).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def content_digest(text: str | None) -> str:
    """A short digest of message content, used in position-based message keys."""
    data = (text or "").encode("utf-8", "surrogatepass")
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()[:16]


def sample_fraction(key: str) -> float:
    """Map a conversation key to a stable number in [0, 1) for sampling decisions."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def new_id() -> str:
    """A random id, for roots that have no stable framework id."""
    return str(uuid.uuid4())

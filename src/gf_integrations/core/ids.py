"""Deterministic identifiers.

Every id we send is derived from stable inputs (conversation + framework id + kind),
so a retry, a resend from the spool or a resent chat history deduplicates on the
server instead of doubling.
"""

from __future__ import annotations

import hashlib
import uuid

_NAMESPACE = uuid.UUID("6f1d1c52-4b0e-5a6c-9d7e-67662d696e74")


# Hashers already fed with their prefix: copying one skips OpenSSL's per-call algorithm
# lookup (about half the cost of hashing these short strings).
_NAMESPACE_SHA1 = hashlib.sha1(_NAMESPACE.bytes, usedforsecurity=False)
_EMPTY_SHA1 = hashlib.sha1(usedforsecurity=False)


def stable_id(*parts: object) -> str:
    """A uuid5 string over ``parts`` joined unambiguously.

    Same value as ``str(uuid.uuid5(namespace, joined))``, computed without building a
    ``uuid.UUID`` (this runs for every message on the worker).
    """
    try:
        joined = "\x1f".join(parts)  # type: ignore[arg-type]  # the common case: all str
    except TypeError:
        joined = "\x1f".join("" if p is None else str(p) for p in parts)
    sha = _NAMESPACE_SHA1.copy()
    sha.update(joined.encode("utf-8", "surrogatepass"))
    digest = sha.digest()
    h = digest.hex()
    # version 5 in the high nibble of byte 6, RFC 4122 variant (10xx) in the top bits of byte 8
    variant = "89ab"[(digest[8] >> 4) & 0x3]
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"


def content_digest(text: str | None) -> str:
    """A short digest of message content, used in position-based message keys."""
    sha = _EMPTY_SHA1.copy()
    sha.update((text or "").encode("utf-8", "surrogatepass"))
    return sha.hexdigest()[:16]


def sample_fraction(key: str) -> float:
    """Map a conversation key to a stable number in [0, 1) for sampling decisions."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def new_id() -> str:
    """A random id, for roots that have no stable framework id."""
    return str(uuid.uuid4())

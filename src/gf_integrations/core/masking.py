"""Masking: a user hook plus a built-in PII redactor.

Masks run on the worker thread before anything is serialised, sent or spooled.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

MaskFn = Callable[[Any], Any]

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_BEARER = re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}")
_API_KEY = re.compile(
    r"\b(?:sk|pk|rk|gf|xox[abpr]|ghp|gho|github_pat|AKIA|AIza)[-_A-Za-z0-9]{12,}\b"
)
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_PHONE = re.compile(r"(?<![\w+])\+?\(?\d{1,4}\)?(?:[ .-]?\(?\d{2,4}\)?){2,5}(?!\w)")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card(m: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", m.group(0))
    if 13 <= len(digits) <= 19 and _luhn_ok(digits):
        return "[REDACTED_CARD]"
    return m.group(0)


def _phone(m: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", m.group(0))
    return "[REDACTED_PHONE]" if 7 <= len(digits) <= 15 else m.group(0)


def redact_text(text: str) -> str:
    """Replace e-mail addresses, Luhn-valid card numbers, API-key and bearer-token
    shapes and phone numbers with ``[REDACTED_*]`` placeholders."""
    text = _BEARER.sub("Bearer [REDACTED_TOKEN]", text)
    text = _API_KEY.sub("[REDACTED_KEY]", text)
    text = _EMAIL.sub("[REDACTED_EMAIL]", text)
    text = _CARD.sub(_card, text)
    return _PHONE.sub(_phone, text)


def redact_pii(value: Any) -> Any:
    """Built-in mask: redact PII in every string inside ``value`` (dicts and lists too)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact_pii(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_pii(v) for v in value]
    return value


def resolve_mask(mask: MaskFn | str | None) -> MaskFn | None:
    """Accept a callable, ``"pii"`` for the built-in redactor, or None."""
    if mask is None or callable(mask):
        return mask
    if mask == "pii":
        return redact_pii
    raise ValueError(f"mask must be a callable, 'pii' or None, not {mask!r}")

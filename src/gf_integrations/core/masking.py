"""Masking: a user hook plus a built-in PII redactor.

Masks run where mapping runs, before anything is serialised, sent or spooled: on the
uploader's worker thread, or on a host thread that assists it (docs/DESIGN.md section 3),
one event at a time. A ``mask=`` callable may therefore run on the caller's thread.

The built-in redactor aims at shapes that are almost never anything else, so that
ordinary numbers (order ids, dates, versions, IP addresses, amounts) survive:

* e-mail addresses;
* phone numbers written as phone numbers: a leading ``+`` with 8-15 digits, a
  parenthesised area code, the North-American ``415-555-2671`` grouping, or a national
  number starting with ``0`` in 3+ groups with 9-12 digits (``030 1234 5678``);
* card numbers: 13-19 digits, optionally grouped by spaces or dashes, that pass Luhn;
* API keys with a known prefix (``sk-``, ``sk_live_``, ``ghp_``, ``xoxb-``, ``AKIA``,
  ``AIza``...) whose body holds digits, JWTs, and ``Bearer`` tokens.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

MaskFn = Callable[[Any], Any]

log = logging.getLogger("gf_integrations")


def apply_mask(mask: MaskFn, value: Any) -> Any:
    """``value`` through the user's mask; a mask that raises leaves a visible placeholder."""
    try:
        return mask(value)
    except Exception:
        log.warning("gf_integrations: mask function raised; field replaced by a placeholder")
        return "[masking failed]" if isinstance(value, str) else {"masked": "[masking failed]"}


_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_BEARER = re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}")
_API_KEY = re.compile(
    r"(?<![A-Za-z0-9])(?:"
    r"(?:sk|pk|rk)[-_](?:[A-Za-z]+[-_])*[A-Za-z0-9_-]{16,}"  # OpenAI/Anthropic/Stripe
    r"|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"  # GitHub
    r"|xox[abprs]-[A-Za-z0-9-]{10,}"  # Slack
    r"|AKIA[0-9A-Z]{16}"  # AWS access key id
    r"|AIza[0-9A-Za-z_-]{30,}"  # Google API key
    r"|gf[-_][A-Za-z0-9_-]{16,}"  # Greenflash-style keys
    r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"  # JWT
    r")(?![A-Za-z0-9])"
)
# not inside a longer number, a decimal ("1234567890123.45") or a dashed id
_CARD = re.compile(r"(?<!\d)(?<!\d[.-])\d(?:[ -]?\d){12,18}(?!\d|[.-]\d)")
_PHONE = re.compile(
    r"(?<![\w+.-])(?:"
    r"\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,6}"  # international: +44 20 7946 0958
    r"|\(\d{2,4}\)[ .-]?\d{3,4}[ .-]?\d{3,4}"  # (415) 555-2671
    r"|\d{3}[.-]\d{3}[.-]\d{4}|\d{3} \d{3} \d{4}"  # 415-555-2671 / 415 555 2671
    r"|0\d{1,4}(?:[ .-]\d{2,4}){2,4}"  # national: 030 1234 5678, 06 12 34 56 78
    r")(?![\w.-]*\d)"
)


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
    text = m.group(0)
    digits = re.sub(r"\D", "", text)
    if not 13 <= len(digits) <= 19 or not _luhn_ok(digits):
        return text
    # mixed separators ("1234-5678 9012") are not how cards are written
    if " " in text and "-" in text:
        return text
    return "[REDACTED_CARD]"


def _api_key(m: re.Match[str]) -> str:
    text = m.group(0)
    # real keys are random: they hold digits; "sk-this-is-a-long-sentence" does not
    if not any(ch.isdigit() for ch in text):
        return text
    return "[REDACTED_KEY]"


def _phone(m: re.Match[str]) -> str:
    text = m.group(0)
    digits = sum(ch.isdigit() for ch in text)
    if text.startswith("+"):
        ok = 8 <= digits <= 15
    elif text.startswith("0"):
        ok = 9 <= digits <= 12
    else:
        ok = digits == 10 or (text.startswith("(") and 9 <= digits <= 11)
    return "[REDACTED_PHONE]" if ok else text


def redact_text(text: str) -> str:
    """Replace e-mail addresses, Luhn-valid card numbers, API-key and bearer-token
    shapes and phone numbers with ``[REDACTED_*]`` placeholders."""
    if not text:
        return text
    text = _BEARER.sub("Bearer [REDACTED_TOKEN]", text)
    text = _API_KEY.sub(_api_key, text)
    if "@" in text:
        text = _EMAIL.sub("[REDACTED_EMAIL]", text)
    text = _CARD.sub(_card, text)
    return _PHONE.sub(_phone, text)


def redact_pii(value: Any) -> Any:
    """Built-in mask: redact PII in every string inside ``value`` (dicts and lists too)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact_pii(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_pii(v) for v in value]
    return value


def resolve_mask(mask: MaskFn | str | None) -> MaskFn | None:
    """Accept a callable, ``"pii"`` for the built-in redactor, or None."""
    if mask is None or callable(mask):
        return mask
    if mask == "pii":
        return redact_pii
    raise ValueError(f"mask must be a callable, 'pii' or None, not {mask!r}")

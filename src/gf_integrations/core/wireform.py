"""Values in wire form: UTC timestamps, bounded text, error descriptions."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from .safejson import Limits, to_jsonable, truncate_text


def iso_utc(t: dt.datetime) -> str:
    """Aware UTC ISO-8601 with ``Z`` (a naive datetime is taken as UTC)."""
    if t.tzinfo is dt.timezone.utc:  # the common case (events.now()): no conversion
        return t.isoformat().replace("+00:00", "Z")
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def wire_text(value: Any, limits: Limits) -> str | None:
    """``value`` as wire text: a string truncated to the limit, anything else as JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return truncate_text(value, limits.max_string)
    converted = to_jsonable(value, limits)
    if isinstance(converted, str):
        return converted
    return truncate_text(json.dumps(converted, ensure_ascii=False), limits.max_string)


def error_info(error: BaseException | str) -> dict[str, str]:
    """An exception (or a message) as ``{"type", "message"}``."""
    if isinstance(error, BaseException):
        return {"type": type(error).__name__, "message": str(error)[:4_000]}
    return {"type": "Error", "message": str(error)[:4_000]}

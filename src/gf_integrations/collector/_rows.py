"""Small helpers shared by the collector's storage modules: ids, times, JSON columns."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

__all__ = ["NS", "IngestError", "dump", "iso", "load", "now", "sid"]

NS = uuid.UUID("0b6f9a52-8d7c-5e4b-a1f3-636f6c6c6563")  # "collec"


class IngestError(Exception):
    """A request that is valid JSON and schema but cannot be applied (400)."""

    def __init__(self, problems: list[dict[str, str]], status: int = 400) -> None:
        super().__init__("; ".join(f"{p['path']}: {p['message']}" for p in problems))
        self.problems = problems
        self.status = status


def sid(*parts: object) -> str:
    """A stable id (uuid5) over ``parts``."""
    return str(uuid.uuid5(NS, "\x1f".join(str(p) for p in parts)))


def now() -> dt.datetime:
    """Aware UTC now."""
    return dt.datetime.now(dt.timezone.utc)


def iso(moment: dt.datetime) -> str:
    """Fixed-width UTC ISO-8601, so text order is time order in SQL."""
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def dump(value: Any) -> str | None:
    """A JSON column value (None stays NULL)."""
    return None if value is None else json.dumps(value, ensure_ascii=False)


def load(value: str | None) -> Any:
    """Read a JSON column."""
    return None if value is None else json.loads(value)

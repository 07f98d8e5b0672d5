"""Turn any Python object into JSON-ready data, with visible truncation.

Never raises: unknown objects become a short ``<Type>`` placeholder or their
``repr`` (truncated), cycles become ``"<cycle>"``, NaN/inf become strings.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import decimal
import enum
import json
import math
import uuid
from collections.abc import Mapping
from typing import Any

TRUNCATION_MARKER = "…[truncated {n} chars]"


@dataclasses.dataclass(frozen=True)
class Limits:
    """Size limits applied while converting values.

    ``max_string``: characters kept per string; ``max_items``: list/dict entries kept;
    ``max_depth``: nesting kept before a placeholder.
    """

    max_string: int = 20_000
    max_items: int = 200
    max_depth: int = 12

    def __post_init__(self) -> None:
        if self.max_string < 16 or self.max_items < 1 or not 1 <= self.max_depth <= 100:
            # depth is capped so that conversion can never hit Python's recursion limit
            raise ValueError("Limits: max_string >= 16, max_items >= 1 and 1 <= max_depth <= 100")


DEFAULT_LIMITS = Limits()
_PLAIN = frozenset({str, int, float, bool, type(None)})


def truncate_text(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` characters, ending with a visible marker."""
    if len(text) <= limit:
        return text
    dropped = len(text) - limit
    return text[:limit] + TRUNCATION_MARKER.format(n=dropped)


def to_jsonable(obj: Any, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Convert ``obj`` to plain JSON data (dict/list/str/int/float/bool/None)."""
    try:
        return _convert(obj, limits, 0, set())
    except Exception as exc:  # defensive: a hostile __repr__ or property
        return f"<unserializable {type(obj).__name__}: {type(exc).__name__}>"


def _convert(obj: Any, limits: Limits, depth: int, seen: set[int]) -> Any:
    # fast path on the exact type: most values are plain str/int/float/bool/None
    kind = type(obj)
    if kind is str:
        return obj if len(obj) <= limits.max_string else truncate_text(obj, limits.max_string)
    if kind is int:
        return obj if -(2**63) < obj < 2**63 else str(obj)
    if kind is float:
        return obj if math.isfinite(obj) else str(obj)
    if obj is None or kind is bool:
        return obj
    if kind is dict and depth < limits.max_depth and len(obj) <= limits.max_items:
        if _flat_and_plain(obj, limits.max_string):
            # a flat dict of short plain values (usage, metadata): copy, done
            return dict(obj)
    if isinstance(obj, bool):
        return obj
    if isinstance(obj, str):
        return truncate_text(obj, limits.max_string)
    if isinstance(obj, int):
        return obj if abs(obj) < 2**63 else str(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, enum.Enum):
        return _convert(obj.value, limits, depth, seen)
    if isinstance(obj, decimal.Decimal):
        # a string keeps the exact value; floats would round it
        return str(obj)
    if isinstance(obj, (dt.datetime, dt.date, dt.time)):
        return obj.isoformat()
    if isinstance(obj, dt.timedelta):
        return obj.total_seconds()
    if isinstance(obj, uuid.UUID):
        return str(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        raw = bytes(obj)
        if len(raw) > 256:
            return f"<{len(raw)} bytes>"
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(raw).decode("ascii")
    if isinstance(obj, BaseException):
        return {"type": type(obj).__name__, "message": truncate_text(str(obj), limits.max_string)}
    if depth >= limits.max_depth:
        return f"<{type(obj).__name__}: max depth>"

    oid = id(obj)
    if oid in seen:
        return "<cycle>"
    seen.add(oid)
    try:
        return _convert_container(obj, limits, depth, seen)
    finally:
        seen.discard(oid)


def _flat_and_plain(obj: dict[Any, Any], max_string: int) -> bool:
    """Whether every key is a str and every value a plain value that needs no change."""
    for k, v in obj.items():
        kind = type(v)
        if type(k) is not str or kind not in _PLAIN:
            return False
        if kind is str:
            if len(v) > max_string:
                return False
        elif kind is float:
            if not math.isfinite(v):
                return False
        elif kind is int and not -(2**63) < v < 2**63:
            return False
    return True


def _convert_container(obj: Any, limits: Limits, depth: int, seen: set[int]) -> Any:
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for i, (k, v) in enumerate(obj.items()):
            if i >= limits.max_items:
                out["…"] = f"[truncated {len(obj) - limits.max_items} items]"
                break
            key = k if isinstance(k, str) else str(_convert(k, limits, depth + 1, seen))
            out[key] = _convert(v, limits, depth + 1, seen)
        return out
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = list(obj)
        if isinstance(obj, (set, frozenset)):
            with contextlib.suppress(TypeError):
                items = sorted(items)
        kept = [_convert(v, limits, depth + 1, seen) for v in items[: limits.max_items]]
        if len(items) > limits.max_items:
            kept.append(f"…[truncated {len(items) - limits.max_items} items]")
        return kept
    # pydantic v2 models, without importing pydantic's type here
    # (depth + 1 below: a converter that returns another such object, e.g. a mock,
    # must still reach max_depth instead of recursing forever)
    dump = getattr(obj, "model_dump", None)
    if callable(dump) and not isinstance(obj, type):
        try:
            return _convert(dump(mode="python"), limits, depth + 1, seen)
        except Exception:
            pass
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {f.name: getattr(obj, f.name, None) for f in dataclasses.fields(obj)}
        return _convert(fields, limits, depth + 1, seen)
    tolist = getattr(obj, "tolist", None)  # numpy arrays and scalars
    if callable(tolist) and not isinstance(obj, type):
        try:
            return _convert(tolist(), limits, depth + 1, seen)
        except Exception:
            pass
    to_dict = getattr(obj, "to_dict", None) or getattr(obj, "dict", None)
    if callable(to_dict) and not isinstance(obj, type):
        try:
            data = to_dict()
            if isinstance(data, Mapping):
                return _convert(data, limits, depth + 1, seen)
        except Exception:
            pass
    if hasattr(obj, "__dict__") and not isinstance(obj, type):
        public = {k: v for k, v in vars(obj).items() if not k.startswith("_")}
        if public:
            return {"__type__": type(obj).__name__, **_convert(public, limits, depth, seen)}
    try:
        text = repr(obj)
    except Exception:
        text = f"<{type(obj).__name__}>"
    return truncate_text(text, min(limits.max_string, 2_000))


def as_object(value: Any, key: str, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Greenflash ``input``/``output`` must be objects: wrap anything else under ``key``."""
    converted = to_jsonable(value, limits)
    if isinstance(converted, dict):
        return converted
    return {key: converted}


INVALID_JSON_MARKER = "invalidJson"


def tool_arguments(
    value: Any,
    limits: Limits = DEFAULT_LIMITS,
    *,
    key: str = "arguments",
    mark_invalid: bool = True,
) -> dict[str, Any]:
    """A tool call's ``input`` object, whatever form the framework handed the arguments in.

    The one place every integration's tool arguments go through (the recorder applies
    it): a dict stays a dict; a JSON string (OpenAI-style wire arguments) is parsed; an
    empty string or ``None`` is a call without arguments (``{}``); valid JSON that is not
    an object is wrapped as ``{key: value}``. A string that is not valid JSON (a stream cut
    short, a model that wrote prose) is kept verbatim as ``{key: "<raw>", "invalidJson":
    true}``: nothing is lost and the marker says why it is not an object. With
    ``mark_invalid=False`` (a tool invoked directly with plain text, which was never
    meant to be JSON) the text is wrapped without the marker.
    """
    if value is None:
        return {}
    if isinstance(value, (str, bytes, bytearray)):
        text = value.decode("utf-8", "replace") if not isinstance(value, str) else value
        if not text.strip():
            return {}
        try:
            parsed = json.loads(text)
        except Exception:  # ValueError, or RecursionError on absurd nesting
            wrapped: dict[str, Any] = {key: truncate_text(text, limits.max_string)}
            if mark_invalid:
                wrapped[INVALID_JSON_MARKER] = True
            return wrapped
        return as_object(parsed, key, limits)
    return as_object(value, key, limits)

"""Reading framework and SDK objects without trusting them: a field that fails to read is
left out (logged once, by type), never the whole event; usage models read lazily."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from ..common.once import warn_once

R = TypeVar("R")


def read_field(read: Callable[[], R], default: R, *, framework: str, what: str) -> R:
    """``read()``, or ``default`` when a framework object surprises it (a converter's guard).

    The field is lost, not the event. Logged once per framework, field and exception type,
    with the type only: the exception's message may quote the host's data.
    """
    try:
        return read()
    except Exception as exc:
        warn_once(
            ("read_field", framework, what, type(exc).__name__),
            "gf_integrations: could not read %s from %s (%s); that field is left out, "
            "the rest is recorded",
            what,
            framework,
            type(exc).__name__,
        )
        return default


def get_field(obj: Any, name: str) -> Any:
    """``obj[name]`` for a mapping (request params), else ``obj.name`` (SDK models)."""
    if isinstance(obj, dict):  # the common case, ahead of the slower ABC check
        return obj.get(name)
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


class LazyUsage(Mapping[str, Any]):
    """A usage model read as a mapping on the worker (no model_dump on the caller).

    Calling it returns the dict: how the recorder resolves a :data:`~.events.Lazy` usage,
    one call instead of a mapping protocol call per key.
    """

    __slots__ = ("_data", "_src")

    def __init__(self, src: Any) -> None:
        self._src = src
        self._data: dict[str, Any] | None = None

    def _dict(self) -> dict[str, Any]:
        if self._data is None:
            dump = getattr(self._src, "model_dump", None)
            data = dump(exclude_none=True) if callable(dump) else dict(self._src)
            self._data = data if isinstance(data, dict) else {}
        return self._data

    def __call__(self) -> dict[str, Any]:
        return self._dict()

    def __getitem__(self, key: str) -> Any:
        return self._dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict())

    def __len__(self) -> int:
        return len(self._dict())


def lazy_usage(value: Any) -> Mapping[str, Any] | None:
    """``value`` (a usage model or mapping) as a lazily dumped mapping."""
    return None if value is None else LazyUsage(value)

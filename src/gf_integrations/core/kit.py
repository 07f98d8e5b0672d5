"""The shared kit of every integration: log-once, a bounded run registry, identity keywords.

API (a fourth integration uses these and nothing else of the others):

* ``log_once(logger, key, msg, *args) -> bool``: log ``msg % args`` as a warning the first
  time ``key`` is seen in this process; never raises. For our own failures in a hook and
  for framework data we cannot read (see docs/DESIGN.md section 5). ``forget_logged(key)``
  lets a key log again (tests).
* ``RunRegistry(cap=, ttl=, stamp=, clock=, sweep_every=, on_drop=)``: a dict of per-run
  (per-span) state with a count cap and a time-to-live, for whatever a framework fails to
  close. ``put`` / ``get`` / ``pop`` / ``setdefault`` are plain dict operations (atomic
  under the GIL, never block); ``sweep()`` drops what expired. Policy: sweep when the map
  passes its cap or every ``sweep_every`` seconds, whichever comes first.
* ``IdentityDefaults`` (the identity-keyword dataclass) and
  ``identity_keywords(owner, ..., client=)`` -> ``(IdentityDefaults, client or None)``:
  validates the keywords every public entry point takes (``external_user_id``,
  ``external_conversation_id``, ``external_organization_id``, ``product_id``,
  ``properties``, ``client``) and fails loudly on a wrong ``client=``. The one resolution
  path is ``GreenflashClient.resolve(defaults=..., native_*=..., fallback_conversation_id=...)``
  (order in docs/DESIGN.md section 4). ``FixedIdentity(defaults).conv(client, generated_id)``
  is its shortcut for the common call with no scope and no native ids.
* ``read_field(read, default, framework=, what=)``: a converter's guard: one field a
  framework object fails to give is left out (logged once), not the whole event.
* ``register_capture_probe(probe)``: how an outer integration (LangChain, LlamaIndex)
  tells the model-client wrappers that it already records the current model call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, ItemsView, Iterator, Mapping, ValuesView
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .context import Conv, IdentityDefaults, register_capture_probe, with_conversation_id

if TYPE_CHECKING:
    from ..client import GreenflashClient

__all__ = [
    "FixedIdentity",
    "IdentityDefaults",
    "RunRegistry",
    "forget_logged",
    "identity_keywords",
    "log_once",
    "read_field",
    "register_capture_probe",
]

# -- log once --------------------------------------------------------------------------

# Keys are sites x error kinds, a small set in practice; the cap keeps a pathological
# key (one per run id) from growing it without bound: past it, nothing new is logged.
_LOGGED_MAX = 4096
_logged: set[Hashable] = set()


def log_once(logger: logging.Logger, key: Hashable, msg: str, *args: object) -> bool:
    """Warn ``msg % args`` on ``logger`` the first time ``key`` is seen; True if it logged.

    Process-wide (a handler attached twice logs once). Never raises: a failing ``repr`` of
    an argument or a broken logging handler is swallowed.
    """
    try:
        if key in _logged or len(_logged) >= _LOGGED_MAX:
            return False
        _logged.add(key)
        logger.warning(msg, *args)
        return True
    except Exception:  # pragma: no cover - logging itself failed
        return False


def forget_logged(key: Hashable) -> None:
    """Let ``key`` log again (tests that assert on a once-per-process warning)."""
    _logged.discard(key)


R = TypeVar("R")


def read_field(read: Callable[[], R], default: R, *, framework: str, what: str) -> R:
    """``read()``, or ``default`` when a framework object surprises it (a converter's guard).

    The field is lost, not the event. Logged once per framework, field and exception type,
    with the type only: the exception's message may quote the host's data.
    """
    try:
        return read()
    except Exception as exc:
        log_once(
            logging.getLogger("gf_integrations"),
            ("read_field", framework, what, type(exc).__name__),
            "gf_integrations: could not read %s from %s (%s); that field is left out, "
            "the rest is recorded",
            what,
            framework,
            type(exc).__name__,
        )
        return default


# -- bounded run registry --------------------------------------------------------------

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class RunRegistry(Generic[K, V]):
    """Per-run state keyed by the framework's run (span) id, bounded in count and age.

    Sweep policy (the one every integration uses): after a ``put``, a sweep runs when the
    map holds more than ``cap`` entries or when ``sweep_every`` seconds of ``clock`` time
    have passed since the last sweep, whichever comes first. A sweep drops every entry
    whose ``stamp(value)`` is older than ``ttl`` seconds, then, if the map is still over
    ``cap``, the oldest entries (insertion order) down to 7/8 of ``cap`` (the headroom
    keeps a full map from being swept on every ``put``). ``on_drop(key, value)`` is called
    for each entry dropped (under no lock of ours; its errors are swallowed). ``stamp`` and
    ``clock`` must use the same clock. A sweep that finds another sweep running returns at
    once: ``put`` never waits.
    """

    __slots__ = (
        "_data",
        "_last_sweep",
        "_sweep_lock",
        "cap",
        "clock",
        "on_drop",
        "stamp",
        "sweep_every",
        "ttl",
    )

    def __init__(
        self,
        *,
        cap: int,
        ttl: float,
        stamp: Callable[[V], float],
        clock: Callable[[], float] = time.monotonic,
        sweep_every: float = 2.0,
        on_drop: Callable[[K, V], None] | None = None,
    ) -> None:
        if cap < 1 or ttl <= 0 or sweep_every <= 0:
            raise ValueError("RunRegistry needs cap >= 1, ttl > 0 and sweep_every > 0")
        self._data: dict[K, V] = {}
        self.cap = cap
        self.ttl = ttl
        self.stamp = stamp
        self.clock = clock
        self.sweep_every = sweep_every
        self.on_drop = on_drop
        self._sweep_lock = threading.Lock()
        self._last_sweep = clock()

    # plain dict operations: a lookup of an unknown key never raises
    def get(self, key: K) -> V | None:
        """The entry, or None."""
        return self._data.get(key)

    def pop(self, key: K) -> V | None:
        """Remove and return the entry, or None."""
        return self._data.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._data))

    def values(self) -> ValuesView[V]:
        """A live view of the entries (copy it before iterating from another thread)."""
        return self._data.values()

    def items(self) -> ItemsView[K, V]:
        """A live view of the entries (copy it before iterating from another thread)."""
        return self._data.items()

    def clear(self) -> None:
        """Forget everything (no ``on_drop``)."""
        self._data.clear()

    def put(self, key: K, value: V, ttl: float | None = None) -> None:
        """Insert or replace, then sweep if the policy says so (with ``ttl`` if given)."""
        self._data[key] = value
        self._after_insert(ttl)

    def setdefault(self, key: K, value: V, ttl: float | None = None) -> V:
        """Insert unless present (atomic); the entry now held. Sweeps like :meth:`put`."""
        held = self._data.setdefault(key, value)
        if held is value:
            self._after_insert(ttl)
        return held

    def _after_insert(self, ttl: float | None) -> None:
        if len(self._data) > self.cap or self.clock() - self._last_sweep >= self.sweep_every:
            self.sweep(ttl=ttl)

    def sweep(self, now: float | None = None, ttl: float | None = None) -> int:
        """Drop expired entries and the oldest beyond the cap; how many were dropped.

        ``now`` / ``ttl`` override the clock and the time-to-live (tests, shutdown).
        """
        if not self._sweep_lock.acquire(blocking=False):
            return 0
        try:
            now = self.clock() if now is None else now
            self._last_sweep = now
            cutoff = now - (self.ttl if ttl is None else ttl)
            items = list(self._data.items())
            stamp = self.stamp
            stale = [(k, v) for k, v in items if stamp(v) < cutoff]
            overflow = len(items) - len(stale) - self.cap
            if overflow > 0:
                overflow += self.cap // 8
                # dict order is insertion order: the first ones are the oldest
                stale.extend([(k, v) for k, v in items if stamp(v) >= cutoff][:overflow])
        finally:
            self._sweep_lock.release()
        dropped = 0
        for key, value in stale:
            if self._data.get(key) is value:
                self._data.pop(key, None)
                dropped += 1
                if self.on_drop is not None:
                    try:
                        self.on_drop(key, value)
                    except Exception:
                        pass
        return dropped


# -- identity keywords -----------------------------------------------------------------


def identity_keywords(
    owner: str,
    *,
    external_user_id: str | None = None,
    external_conversation_id: str | None = None,
    external_organization_id: str | None = None,
    product_id: str | None = None,
    properties: Mapping[str, Any] | None = None,
    client: Any = None,
) -> tuple[IdentityDefaults, GreenflashClient | None]:
    """Validate a public entry point's identity keywords; a wrong ``client=`` fails here.

    ``owner`` names the entry point in the error (``"wrap_openai"``,
    ``"GreenflashCallbackHandler"``). ``properties`` is copied: the caller's dict may change.
    """
    from ..client import GreenflashClient  # client imports core; core imports it lazily

    if client is not None and not isinstance(client, GreenflashClient):
        raise TypeError(f"{owner}(client=...) expects a gf_integrations.GreenflashClient")
    defaults = IdentityDefaults(
        external_user_id=external_user_id,
        external_conversation_id=external_conversation_id,
        external_organization_id=external_organization_id,
        product_id=product_id,
        properties=dict(properties) if properties else None,
    )
    return defaults, client


class FixedIdentity:
    """An entry point's identity keywords as a client resolves them, computed once.

    For the common call: no ``conversation(...)`` scope and no framework-native ids, so only
    the keywords and the client's defaults apply. Neither changes, so the resolution runs
    once per client and each call only varies its generated conversation id (this runs on
    the host's thread for every root run or wrapped call).
    """

    __slots__ = ("_resolved", "defaults")

    def __init__(self, defaults: IdentityDefaults) -> None:
        self.defaults = defaults
        self._resolved: tuple[GreenflashClient, Conv] | None = None

    def conv(self, client: GreenflashClient, generated_id: str) -> Conv:
        """What ``client.resolve(defaults=...)`` gives, with ``generated_id`` as the
        conversation id unless the keywords fix one."""
        resolved = self._resolved
        if resolved is None or resolved[0] is not client:
            resolved = self._resolved = (client, client.resolve(defaults=self.defaults))
        if self.defaults.external_conversation_id:
            return resolved[1]
        return with_conversation_id(resolved[1], generated_id)

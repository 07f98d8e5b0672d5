"""The integration kit: everything an integration uses besides the neutral events.

It sits between the integrations (above) and the client and core (below); an integration
imports the kit, ``core.events`` / ``core.context`` and the client, and nothing of another
integration. A new integration is built from these:

* identity: ``IdentityKwargs`` (``**identity: Unpack[IdentityKwargs]``) and
  ``identity_keywords(owner, identity)`` -> ``(IdentityDefaults, client or None)``, which
  fails loudly on an unknown keyword or a wrong ``client=``; ``FixedIdentity`` resolves them
  once per client for the common call (the order: docs/DESIGN.md section 4).
* our own failures: ``warn_once(key, message, *args, exc=)`` (the exception's type, never
  its text) and ``wrapper_failed(label, where, exc)``; ``forget_logged(key)`` for tests.
* per-run state: ``RunRegistry`` (count cap and time-to-live), ``BoundedMap``.
* reading foreign objects: ``read_field`` (one field lost, not the event), ``get_field``,
  ``lazy_usage``.
* model-SDK wrappers: ``WrapConfig``, ``CallState``, ``patch``, ``sync_method`` /
  ``async_method``, ``record_failure``, ``resolve_identity`` (:mod:`.calls`); stream taps
  (:mod:`.streams`).
* ``register_capture_probe(probe)``: how an outer integration (LangChain, LlamaIndex) tells
  the model-client wrappers that it already records the current model call.
"""

from __future__ import annotations

from ..common.bounded import BoundedMap, RunRegistry
from ..common.once import forget_logged, warn_once
from ..core.context import IdentityDefaults, register_capture_probe
from .answers import ResponseAnswers, attribute_of
from .calls import (
    CallState,
    WrapConfig,
    async_method,
    finish_on_parse,
    instrument_copies,
    is_raw,
    patch,
    record_failure,
    recorder_for,
    resolve_identity,
    rewrap,
    snapshot,
    sync_method,
    wrapper_failed,
)
from .fields import LazyUsage, get_field, lazy_usage, read_field
from .identity import FixedIdentity, IdentityKwargs, Unpack, identity_keywords
from .streams import (
    StreamTap,
    finish_when_collected,
    tap_async,
    tap_sync,
    watch_aclose,
    watch_close,
)

__all__ = [
    "BoundedMap",
    "CallState",
    "FixedIdentity",
    "IdentityDefaults",
    "IdentityKwargs",
    "LazyUsage",
    "ResponseAnswers",
    "RunRegistry",
    "StreamTap",
    "Unpack",
    "WrapConfig",
    "async_method",
    "attribute_of",
    "finish_on_parse",
    "finish_when_collected",
    "forget_logged",
    "get_field",
    "identity_keywords",
    "instrument_copies",
    "is_raw",
    "lazy_usage",
    "patch",
    "read_field",
    "record_failure",
    "recorder_for",
    "register_capture_probe",
    "resolve_identity",
    "rewrap",
    "snapshot",
    "sync_method",
    "tap_async",
    "tap_sync",
    "warn_once",
    "watch_aclose",
    "watch_close",
    "wrapper_failed",
]

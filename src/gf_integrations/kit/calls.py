"""The model-SDK wrappers' per-call machinery (``wrap_openai``, ``wrap_anthropic``, ...).

A wrapper instruments one client *instance*: it replaces a few bound methods on that
instance (never on the class), keeps copies made with ``with_options`` / ``copy``
instrumented, and records each call as an :class:`~gf_integrations.core.events.LLMCall`
built from plain references on the caller's thread. Raw-response calls
(``with_raw_response``, ``with_streaming_response``) are recorded when the caller parses
them (``.parse()``, the SDK's own type): frameworks such as the OpenAI Agents SDK and
LangChain's ``ChatOpenAI`` / ``ChatAnthropic`` call the API that way. A raw response read
only as bytes or lines is not recorded. Streams: :mod:`.streams`.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import itertools
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar

from ..client import GreenflashClient, get_client
from ..common.once import warn_once
from ..core.context import Conv, IdentityDefaults, current_scope, outer_llm_capture_active
from ..core.events import ChatMessage, LLMCall, now
from .identity import FixedIdentity

MARKER = "_gf_integrations_config"
# Bytes of the opening messages that feed a derived conversation id: enough to tell
# conversations apart, bounded so a huge system prompt does not cost the caller.
DERIVE_CHARS = 4096

_RUN = uuid.uuid4().hex[:12]
_seq = itertools.count()
# True while a patched method runs: a patched method that the SDK itself calls from inside
# another one is the same request, recorded once, by the outer call (before openai 1.50,
# beta.chat.completions.parse posts through chat.completions.create).
_inside: ContextVar[bool] = ContextVar("gf_integrations_inside_call", default=False)


def wrapper_failed(label: str, where: str, exc: BaseException) -> None:
    """Our own failure in a wrapper: one warning per wrapper and site, with the exception's
    type only (its text may quote the host's data), never raised into the host."""
    warn_once(
        ("wrapper", label, where),
        "gf_integrations: %s wrapper failed in %s; the call itself is unaffected, further "
        "errors here are not logged",
        label,
        where,
        exc=exc,
    )


# -- configuration --------------------------------------------------------------------


class WrapConfig:
    """What a ``wrap_*`` call was given; shared by a client and its ``with_options`` copies."""

    __slots__ = ("defaults", "fixed", "gf_client", "provider")
    label = "client"  # names the wrapper in our own warnings

    def __init__(
        self, defaults: IdentityDefaults, gf_client: GreenflashClient | None, provider: str
    ) -> None:
        self.defaults = defaults
        self.gf_client = gf_client
        self.provider = provider
        # what a call with no scope and no native ids resolves to (see resolve_identity)
        self.fixed = FixedIdentity(defaults)


def rewrap(target: Any, cfg: WrapConfig) -> bool:
    """Wrapping twice keeps one layer and takes the newest settings; True if it applied."""
    existing = target.__dict__.get(MARKER)
    if not isinstance(existing, type(cfg)):
        return False
    for cls in type(cfg).__mro__:
        for name in getattr(cls, "__slots__", ()):
            setattr(existing, name, getattr(cfg, name))
    return True


def instrument_copies(client: Any, cfg: WrapConfig, instrument: Callable[[Any, Any], None]) -> None:
    """Mark ``client`` as wrapped and make its ``copy`` / ``with_options`` results wrapped too."""
    client.__dict__[MARKER] = cfg
    original_copy = client.copy

    @functools.wraps(original_copy)
    def copy(*args: Any, **kwargs: Any) -> Any:
        new = original_copy(*args, **kwargs)
        try:
            if MARKER not in new.__dict__:
                instrument(new, cfg)
        except Exception as exc:
            wrapper_failed(cfg.label, "copy", exc)
        return new

    # instance attributes shadow the class methods (`with_options = copy` on the class)
    client.copy = copy
    client.with_options = copy


def patch(resource: Any, name: str, wrapper: Callable[..., Any]) -> None:
    """Set ``wrapper`` as ``resource.name`` on the instance, unless it is already ours."""
    if getattr(getattr(resource, name, None), "__gf_wrapped__", False):
        return
    setattr(resource, name, wrapper)


# -- one call -------------------------------------------------------------------------


class CallState:
    """Per-call state captured on the caller's thread: plain values and references."""

    __slots__ = ("api", "cfg", "conv", "gfc", "key", "kwargs", "model", "started", "t0")

    def __init__(
        self, cfg: WrapConfig, gfc: GreenflashClient, api: str, kwargs: dict[str, Any]
    ) -> None:
        self.cfg = cfg
        self.gfc = gfc
        self.api = api
        self.kwargs = kwargs
        self.key = f"{_RUN}-{next(_seq)}"
        self.started = now()
        self.t0 = time.perf_counter()
        model = kwargs.get("model")
        self.model = model if isinstance(model, str) else None
        self.conv: Any = None

    def restart(self) -> None:
        """The request goes out now (a stream helper entered later than it was made)."""
        self.started = now()
        self.t0 = time.perf_counter()

    def error_properties(self, exc: BaseException) -> dict[str, Any]:
        """What a failed call's error says beyond its type and message (an SDK's
        ``status_code``); a wrapper whose SDK says more overrides this."""
        status = getattr(exc, "status_code", None)
        return {"statusCode": status} if isinstance(status, int) else {}

    def properties(self, response_id: Any = None) -> dict[str, Any]:
        """Reply properties every call carries."""
        props: dict[str, Any] = {"api": self.api}
        if isinstance(response_id, str):
            props["responseId"] = response_id
        return props


_C = TypeVar("_C", bound=CallState)


def is_raw(headers: Any) -> bool:
    """A ``with_raw_response`` / ``with_streaming_response`` call (Stainless SDKs)."""
    if not headers:
        return False
    try:
        for name in headers:
            if isinstance(name, str) and name.lower() == "x-stainless-raw-response":
                return True
    except Exception:
        return False
    return False


def recorder_for(cfg: WrapConfig, kwargs: Mapping[str, Any]) -> GreenflashClient | None:
    """The client to record this call through, or None to pass it through untouched."""
    gfc = cfg.gf_client or get_client()
    if not gfc.active or outer_llm_capture_active():
        return None
    return gfc


def snapshot(call: CallState, kwargs: dict[str, Any], name: str) -> list[Any]:
    """A shallow copy of the caller's list: apps append to it right after the call."""
    value = kwargs.get(name)
    if isinstance(value, (list, tuple)):
        return list(value)
    if value is None or isinstance(value, (str, bytes, Mapping)):
        return []
    try:
        items = list(value)  # a one-shot iterable: hand the SDK the list we consumed
    except TypeError:
        return []
    call.kwargs = {**kwargs, name: items}
    return items


def resolve_identity(
    call: CallState,
    *,
    native_conversation_id: str | None,
    native_user_id: str | None,
    opening: Callable[[], tuple[str, str]] | None,
    prefix: str,
) -> Conv:
    """The call's conversation; without any id, one derived from the opening messages.

    The derived id hashes the user and the opening (system prompt, first user message),
    so a stateless app that resends its growing history lands in one conversation.
    """
    d = call.cfg.defaults
    scope = current_scope()
    fallback = "unused"
    if not (
        d.external_conversation_id
        or native_conversation_id
        or (scope is not None and scope.external_conversation_id)
    ):
        resolved_user = (
            d.external_user_id
            or (scope.external_user_id if scope is not None else None)
            or native_user_id
            or call.gfc.settings.external_user_id
            or "anonymous"
        )
        system, first_user = opening() if opening is not None else ("", call.api)
        material = (
            f"{resolved_user}\x1f{len(system)}\x1f{system[:DERIVE_CHARS]}"
            f"\x1f{len(first_user)}\x1f{first_user[:DERIVE_CHARS]}"
        )
        digest = hashlib.sha1(material.encode("utf-8", "surrogatepass")).hexdigest()[:24]
        fallback = f"{prefix}-{digest}"
    if scope is None and native_conversation_id is None and native_user_id is None:
        return call.cfg.fixed.conv(call.gfc, fallback)  # the common case
    return call.gfc.resolve(
        defaults=d,
        native_conversation_id=native_conversation_id,
        native_user_id=native_user_id,
        fallback_conversation_id=fallback,
    )


def record_failure(
    call: CallState, exc: BaseException, messages: Callable[[], Sequence[ChatMessage]]
) -> None:
    """Record a call the provider answered with an error (the caller still gets it)."""
    try:
        props = {**call.properties(), **call.error_properties(exc)}
        call.gfc.record(
            LLMCall(
                call.conv,
                call.key,
                messages=messages,
                model=call.model,
                provider=call.cfg.provider,
                started_at=call.started,
                error=exc,
                properties=props,
            )
        )
    except Exception as err:
        wrapper_failed(call.cfg.label, "recording an error", err)


def sync_method(
    original: Callable[..., Any],
    begin: Callable[[dict[str, Any]], _C | None],
    finish: Callable[[_C, Any], Any],
    fail: Callable[[_C, BaseException], None],
    errors: type[BaseException] | tuple[type[BaseException], ...],
) -> Callable[..., Any]:
    """``original`` recorded: ``begin`` snapshots (None passes through), ``finish`` or
    ``fail`` records; the caller gets exactly what ``original`` returns or raises."""

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        call = None if _inside.get() else begin(kwargs)
        if call is None:
            return original(*args, **kwargs)
        token = _inside.set(True)
        try:
            result = original(*args, **call.kwargs)
        except errors as exc:
            fail(call, exc)
            raise
        finally:
            _inside.reset(token)
        if is_raw(kwargs.get("extra_headers")):
            return finish_on_parse(call, result, finish)
        return finish(call, result)

    wrapper.__gf_wrapped__ = True  # type: ignore[attr-defined]
    return wrapper


def async_method(
    original: Callable[..., Any],
    begin: Callable[[dict[str, Any]], _C | None],
    finish: Callable[[_C, Any], Any],
    fail: Callable[[_C, BaseException], None],
    errors: type[BaseException] | tuple[type[BaseException], ...],
) -> Callable[..., Any]:
    """The ``async`` twin of :func:`sync_method`."""

    # `async def` on purpose: SDK methods may be wrapped by synchronous decorators
    # (`required_args`), and the async stream managers await what create returns.
    @functools.wraps(original)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        call = None if _inside.get() else begin(kwargs)
        if call is None:
            return await original(*args, **kwargs)
        token = _inside.set(True)
        try:
            result = await original(*args, **call.kwargs)
        except errors as exc:
            fail(call, exc)
            raise
        finally:
            _inside.reset(token)
        if is_raw(kwargs.get("extra_headers")):
            return finish_on_parse(call, result, finish)
        return finish(call, result)

    wrapper.__gf_wrapped__ = True  # type: ignore[attr-defined]
    return wrapper


def finish_on_parse(call: _C, raw: Any, finish: Callable[[_C, Any], Any]) -> Any:
    """Hand ``finish`` what the caller's first ``raw.parse()`` returns; ``raw`` unchanged.

    ``parse`` is shadowed on this one response object; it returns exactly what the SDK's
    does (the same cached object on later calls). ``parse(to=...)`` is not recorded.
    """
    try:
        parse = raw.parse
        pending = [True]

        def first(args: tuple[Any, ...], kwargs: dict[str, Any], value: Any) -> None:
            if pending and not args and kwargs.get("to") is None:
                pending.clear()
                finish(call, value)

        if inspect.iscoroutinefunction(parse):

            @functools.wraps(parse)
            async def parsed_async(*args: Any, **kwargs: Any) -> Any:
                value = await parse(*args, **kwargs)
                first(args, kwargs, value)
                return value

            raw.parse = parsed_async
        else:

            @functools.wraps(parse)
            def parsed(*args: Any, **kwargs: Any) -> Any:
                value = parse(*args, **kwargs)
                first(args, kwargs, value)
                return value

            raw.parse = parsed
    except Exception as exc:
        wrapper_failed(call.cfg.label, "hooking a raw response", exc)
    return raw

"""Shared machinery of the provider client wrappers (``wrap_openai``, ``wrap_anthropic``).

A wrapper instruments one client *instance*: it replaces a few bound methods on that
instance (never on the class), keeps copies made with ``with_options`` / ``copy``
instrumented, and records each call as an
:class:`~gf_integrations.core.events.LLMCall` built from plain references on the caller's
thread (conversion happens on the worker). Streams are tapped in place: the SDK's stream
object keeps its identity, its private ``_iterator`` is replaced by a generator that notes
each item and records once at the end (exhaustion, error, ``close()``, or discard).
Raw-response calls (``with_raw_response``, ``with_streaming_response``) are recorded when
the caller parses them (``.parse()``, the SDK's own type): frameworks such as the OpenAI
Agents SDK and LangChain's ``ChatOpenAI`` / ``ChatAnthropic`` call the API that way. A raw
response read only as bytes or lines is not recorded.

Everything here is provider-neutral; the provider modules supply the request snapshot,
the conversion to neutral messages and the reply/stream recording.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import itertools
import logging
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, Generic, TypeVar

from ..client import GreenflashClient, get_client
from .context import Conv, IdentityDefaults, current_scope, outer_llm_capture_active
from .events import ChatMessage, LLMCall, now
from .kit import FixedIdentity

log = logging.getLogger("gf_integrations")

MARKER = "_gf_integrations_config"
# Bytes of the opening messages that feed a derived conversation id: enough to tell
# conversations apart, bounded so a huge system prompt does not cost the caller.
DERIVE_CHARS = 4096

_RUN = uuid.uuid4().hex[:12]
_seq = itertools.count()
_warned: set[tuple[str, str]] = set()
# True while a patched method runs: a patched method that the SDK itself calls from inside
# another one is the same request, recorded once, by the outer call (before openai 1.50,
# beta.chat.completions.parse posts through chat.completions.create).
_inside: ContextVar[bool] = ContextVar("gf_integrations_inside_call", default=False)


def log_once(label: str, where: str, exc: BaseException) -> None:
    """Our own failures: one warning per wrapper and site, never raised into the host."""
    if (label, where) in _warned:
        return
    _warned.add((label, where))
    log.warning(
        "gf_integrations: %s wrapper failed in %s (%s: %s); the call itself is "
        "unaffected, further errors here are not logged",
        label,
        where,
        type(exc).__name__,
        exc,
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
            log_once(cfg.label, "copy", exc)
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
        props = call.properties()
        status = getattr(exc, "status_code", None)
        if isinstance(status, int):
            props["statusCode"] = status
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
        log_once(call.cfg.label, "recording an error", err)


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
        log_once(call.cfg.label, "hooking a raw response", exc)
    return raw


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


def get_field(obj: Any, name: str) -> Any:
    """``obj[name]`` for a mapping (request params), else ``obj.name`` (SDK models)."""
    if isinstance(obj, dict):  # the common case, ahead of the slower ABC check
        return obj.get(name)
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


# -- streams --------------------------------------------------------------------------


class StreamTap(Generic[_C]):
    """Collects a stream's items (references only) and records once at the end.

    The end is whichever comes first: exhaustion, an error, ``close()`` (seen through the
    HTTP response's close, which the stream's ``close`` and the context managers all
    reach), or the stream being discarded (collected), read or not. Subclasses implement
    :meth:`record`.
    """

    __slots__ = ("call", "done", "first_at", "items", "running")

    def __init__(self, call: _C) -> None:
        self.call = call
        self.items: list[Any] = []
        self.done = False
        self.running = False
        self.first_at: float | None = None

    def keep(self, item: Any) -> bool:
        """Note one stream item; False hides it from the caller."""
        if not self.items:
            self.first_at = time.perf_counter()
        self.items.append(item)
        return True

    def finish(self, how: str, error: BaseException | None = None) -> None:
        """Record once; ``how`` is exhausted / error / closed / abandoned."""
        if self.done:
            return
        self.done = True
        try:
            self.record(how, error)
        except Exception as exc:
            log_once(self.call.cfg.label, "recording a stream", exc)

    def record(self, how: str, error: BaseException | None) -> None:
        """Record the stream's call from ``self.items``."""
        raise NotImplementedError

    def stream_props(self, how: str, response_id: Any) -> dict[str, Any]:
        """Reply properties of a stream: time to first item, and how it ended if early."""
        props = self.call.properties(response_id)
        props["stream"] = True
        if self.first_at is not None:
            props["timeToFirstTokenMs"] = round((self.first_at - self.call.t0) * 1000, 3)
        if how != "exhausted":
            props["streamEnd"] = how
        return props


def finish_when_collected(owner: Any, tap: StreamTap[Any]) -> None:
    """Finish ``tap`` as abandoned when ``owner`` (what the caller holds) is collected."""
    # a stream dropped before its generator ever ran gets no GeneratorExit: record it
    # when the stream object goes (not at interpreter exit, when the uploader is gone)
    try:
        weakref.finalize(owner, tap.finish, "abandoned").atexit = False
    except TypeError:  # not weak-referenceable: the generator's end still records it
        pass


def tap_sync(stream: Any, tap: StreamTap[Any]) -> None:
    """Route a Stainless ``Stream``'s items through ``tap``; the object stays the same."""
    inner: Iterator[Any] = stream._iterator

    def tapped() -> Iterator[Any]:
        tap.running = True
        try:
            for item in inner:
                if not tap.keep(item):
                    continue
                tap.running = False
                yield item
                tap.running = True
        except GeneratorExit:
            tap.finish("abandoned")
            raise
        except BaseException as exc:
            tap.finish("error", exc)
            raise
        tap.finish("exhausted")

    stream._iterator = tapped()
    watch_close(stream.response, tap)
    finish_when_collected(stream, tap)


def watch_close(response: Any, tap: StreamTap[Any]) -> None:
    """Finish ``tap`` as closed when the caller closes ``response`` (a sync HTTP response)
    early: the stream's ``close`` and its context managers all reach it."""
    close = response.close

    def close_hook() -> None:
        try:
            close()
        finally:
            if not tap.running:  # a close from inside the stream's own end is not early
                tap.finish("closed")

    response.close = close_hook


def tap_async(stream: Any, tap: StreamTap[Any]) -> None:
    """The ``AsyncStream`` twin of :func:`tap_sync`."""
    inner: AsyncIterator[Any] = stream._iterator

    async def tapped() -> AsyncIterator[Any]:
        tap.running = True
        try:
            async for item in inner:
                if not tap.keep(item):
                    continue
                tap.running = False
                yield item
                tap.running = True
        except GeneratorExit:
            tap.finish("abandoned")
            raise
        except BaseException as exc:
            tap.finish("error", exc)
            raise
        tap.finish("exhausted")

    stream._iterator = tapped()
    watch_aclose(stream.response, tap)
    finish_when_collected(stream, tap)


def watch_aclose(response: Any, tap: StreamTap[Any]) -> None:
    """The async twin of :func:`watch_close` (``response.aclose``)."""
    aclose = response.aclose

    async def aclose_hook() -> None:
        try:
            await aclose()
        finally:
            if not tap.running:
                tap.finish("closed")

    response.aclose = aclose_hook

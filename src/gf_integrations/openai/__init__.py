"""Greenflash logging for the OpenAI Python client: ``wrap_openai(client)``.

::

    from openai import OpenAI
    from gf_integrations.openai import wrap_openai

    client = wrap_openai(OpenAI(), external_user_id="u1")
    client.chat.completions.create(model="gpt-4o-mini", messages=[...])

``wrap_openai`` returns the very object it was given (still an ``OpenAI``,
``AsyncOpenAI``, ``AzureOpenAI`` or ``AsyncAzureOpenAI``). It replaces a few bound methods
*on that instance* (chat completions ``create``/``parse``, responses
``create``/``parse``, embeddings ``create``: those the installed SDK has; and
``copy``/``with_options`` so that copies are instrumented too). Classes are never
patched: other clients in the process, e.g. the ones LangChain creates internally, stay
untouched and pay nothing, and the wrapper does not stack with peers that patch the
classes.

What reaches the caller is exactly what the bare client returns or raises: the same
response objects, the same ``openai.Stream`` / ``AsyncStream`` objects (their private
``_iterator`` is tapped), the same exceptions. Raw-response calls (``with_raw_response``,
``with_streaming_response``, which the OpenAI Agents SDK and LangChain's ``ChatOpenAI``
use) are recorded when the caller parses them.

Layout: this module holds ``wrap_openai`` and the per-call flow (patching, before and
after each call); ``endpoints`` the table of APIs, one row each; ``call`` the call state
and identity; ``chat`` / ``responses`` / ``embeddings`` each API's request, response and
stream reading; ``stream`` the stream tap. See docs/DESIGN.md for the layers.
"""

from __future__ import annotations

import functools
import logging
import warnings
from typing import Any, TypeVar

try:
    import openai  # the SDK: absolute imports never resolve to this package
    from openai import AsyncStream, Stream
except ImportError:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "gf_integrations.openai needs the OpenAI client: pip install 'gf-integrations[openai]'"
    ) from None

from ..core.targets import register_target_resolver
from ..kit import (
    IdentityKwargs,
    Unpack,
    async_method,
    identity_keywords,
    instrument_copies,
    patch,
    record_failure,
    recorder_for,
    rewrap,
    sync_method,
    tap_async,
    tap_sync,
    wrapper_failed,
)
from .call import Call, Config, rating_target
from .endpoints import ENDPOINTS, Endpoint
from .stream import OpenAIStreamTap

log = logging.getLogger("gf_integrations")

__all__ = ["wrap_openai"]

register_target_resolver(rating_target)

_C = TypeVar("_C")


def _log_once(where: str, exc: BaseException) -> None:
    wrapper_failed("OpenAI", where, exc)


# -- public API -----------------------------------------------------------------------


def wrap_openai(
    openai_client: _C,
    /,
    *,
    stream_usage: bool | None = None,
    **identity: Unpack[IdentityKwargs],
) -> _C:
    """Log every chat, Responses and embeddings call of an OpenAI client to Greenflash.

    Returns ``openai_client`` itself, still an instance of its class. Copies made with
    ``.with_options(...)`` / ``.copy(...)`` are instrumented with the same settings.
    Wrapping again is harmless: it keeps one layer and takes the newest settings.

    Args:
        openai_client: an ``openai.OpenAI``, ``AsyncOpenAI``, ``AzureOpenAI`` or
            ``AsyncAzureOpenAI`` (positional).
        **identity: the identity keywords (:class:`~gf_integrations.kit.IdentityKwargs`):
            ``external_user_id``, ``external_conversation_id``,
            ``external_organization_id``, ``product_id``, ``properties`` (conversation
            properties sent with every call) and ``client`` (the
            :class:`~gf_integrations.GreenflashClient` to record through; default: the
            configured one). Which identity wins when several apply: docs/DESIGN.md
            section 4. Without any id, a
            conversation id is derived from the user and the opening messages (system
            prompt + first user message), so a stateless app that resends its growing
            history lands in one conversation, each message stored once.
        stream_usage: deprecated, does nothing (warns once): the caller's request is
            never changed. A chat stream carries token usage only when the caller asks for
            it with ``stream_options={"include_usage": True}``; without it the recorded
            reply has ``properties.usageMissing``.

    Raises:
        TypeError: when ``openai_client`` is not an OpenAI client instance.
    """
    if stream_usage is not None:
        _stream_usage_deprecated()
    defaults, recorder = identity_keywords("wrap_openai", identity)
    target: Any = openai_client
    if not isinstance(target, (openai.OpenAI, openai.AsyncOpenAI)):
        raise TypeError(
            "wrap_openai() expects an openai.OpenAI / AsyncOpenAI / AzureOpenAI / "
            f"AsyncAzureOpenAI instance, got {type(target).__name__}"
        )
    azure = isinstance(target, (openai.AzureOpenAI, openai.AsyncAzureOpenAI))
    cfg = Config(defaults, recorder, "azure" if azure else "openai")
    if not rewrap(target, cfg):
        _instrument(target, cfg)
    return openai_client


_warned_stream_usage = False


def _stream_usage_deprecated() -> None:
    global _warned_stream_usage
    if _warned_stream_usage:
        return
    _warned_stream_usage = True
    warnings.warn(
        "wrap_openai(stream_usage=...) is deprecated and does nothing: the request is never "
        "changed. Ask for stream usage yourself with "
        'stream_options={"include_usage": True}.',
        DeprecationWarning,
        stacklevel=3,
    )


# -- instrumentation ------------------------------------------------------------------


_ERRORS = openai.OpenAIError


def _instrument(client: Any, cfg: Config) -> None:
    make = async_method if isinstance(client, openai.AsyncOpenAI) else sync_method
    instrument_copies(client, cfg, _instrument)
    for endpoint in ENDPOINTS:
        begin = functools.partial(_begin, cfg, endpoint)
        for path in endpoint.resources:
            try:
                res = _resource(client, path)
                for name in endpoint.methods:
                    original = getattr(res, name, None) if res is not None else None
                    if callable(original):
                        patch(res, name, make(original, begin, _finish, _record_api_error, _ERRORS))
                    else:
                        log.debug("gf_integrations: this openai has no %s.%s", ".".join(path), name)
            except Exception as exc:  # the others stay instrumented; the client works as is
                _log_once("wrapping " + ".".join(path), exc)


def _resource(client: Any, path: tuple[str, ...]) -> Any:
    """``client.<path>``, or None when this SDK release has no such resource."""
    res = client
    for name in path:
        try:
            res = getattr(res, name)
        except Exception:  # absent, or a lazy resource whose import fails
            return None
    return res


# -- one call -------------------------------------------------------------------------


def _begin(cfg: Config, endpoint: Endpoint, kwargs: dict[str, Any]) -> Call | None:
    """Decide whether to record and snapshot what we need. None means pass through."""
    try:
        gfc = recorder_for(cfg, kwargs)
        if gfc is None:
            return None
        call = Call(cfg, gfc, endpoint, kwargs)
        endpoint.begin(call, kwargs)
        return call
    except Exception as exc:
        _log_once("before the call", exc)
        return None


def _record_api_error(call: Call, exc: BaseException) -> None:
    """The API raised (the caller gets the same exception): record the failed call."""
    record_failure(call, exc, call.endpoint.inputs(call))


def _finish(call: Call, result: Any) -> Any:
    """Record a completed call (or tap a stream). Returns ``result`` unchanged."""
    try:
        if isinstance(result, Stream):
            tap_sync(result, OpenAIStreamTap(call))
        elif isinstance(result, AsyncStream):
            tap_async(result, OpenAIStreamTap(call))
        else:
            call.endpoint.record(call, result)
    except Exception as exc:
        _log_once("after the call", exc)
    return result

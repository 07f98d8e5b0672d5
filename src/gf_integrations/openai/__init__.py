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
after each call); ``call`` the call state and identity, ``chat`` / ``responses`` /
``embeddings`` each API's recording and conversion, ``stream`` the streams. See
docs/DESIGN.md for the layers and the hot-path rule.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, TypeVar

try:
    import openai  # the SDK: absolute imports never resolve to this package
    from openai import AsyncStream, Stream
except ImportError:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "gf_integrations.openai needs the OpenAI client: pip install 'gf-integrations[openai]'"
    ) from None

from ..client import GreenflashClient
from ..core.clientwrap import (
    async_method,
    instrument_copies,
    log,
    log_once,
    patch,
    record_failure,
    recorder_for,
    rewrap,
    sync_method,
    tap_async,
    tap_sync,
)
from ..core.kit import identity_keywords
from ..core.targets import register_target_resolver
from .call import Call, Config, rating_target, resolve_call
from .chat import begin_chat, chat_inputs_fn
from .chat import record_chat as _record_chat  # a module global: tests replace it here
from .embeddings import record_embeddings
from .responses import begin_responses, record_response, responses_inputs_fn
from .stream import OpenAIStreamTap

__all__ = ["wrap_openai"]

register_target_resolver(rating_target)

_C = TypeVar("_C")


def _log_once(where: str, exc: BaseException) -> None:
    log_once("OpenAI", where, exc)


# -- public API -----------------------------------------------------------------------


def wrap_openai(
    openai_client: _C,
    /,
    *,
    external_user_id: str | None = None,
    external_conversation_id: str | None = None,
    external_organization_id: str | None = None,
    product_id: str | None = None,
    properties: Mapping[str, Any] | None = None,
    client: GreenflashClient | None = None,
    stream_usage: bool = False,
) -> _C:
    """Log every chat, Responses and embeddings call of an OpenAI client to Greenflash.

    Returns ``openai_client`` itself, still an instance of its class. Copies made with
    ``.with_options(...)`` / ``.copy(...)`` are instrumented with the same settings.
    Wrapping again is harmless: it keeps one layer and takes the newest settings.

    Args:
        openai_client: an ``openai.OpenAI``, ``AsyncOpenAI``, ``AzureOpenAI`` or
            ``AsyncAzureOpenAI`` (positional).
        external_user_id: default user. Precedence for every identity field, first hit
            wins: these arguments > ``gf_integrations.conversation(...)`` > the
            request's ``user`` / ``safety_identifier`` and the Responses
            ``conversation`` / ``previous_response_id`` chain > configured defaults >
            a conversation id derived from the user and the opening messages (system
            prompt + first user message), so a stateless app that resends its growing
            history lands in one conversation, each message stored once.
        external_conversation_id: default conversation id.
        external_organization_id: default organization id.
        product_id: Greenflash product id.
        properties: conversation properties sent with every call.
        client: the :class:`~gf_integrations.GreenflashClient` to record through
            (default: the configured default client).
        stream_usage: ask chat streams for token usage
            (``stream_options={"include_usage": True}``) when the caller did not; the
            extra usage-only chunk (``choices == []``) is then hidden from the caller.

    Raises:
        TypeError: when ``openai_client`` is not an OpenAI client instance.
    """
    defaults, recorder = identity_keywords(
        "wrap_openai",
        external_user_id=external_user_id,
        external_conversation_id=external_conversation_id,
        external_organization_id=external_organization_id,
        product_id=product_id,
        properties=properties,
        client=client,
    )
    target: Any = openai_client
    if not isinstance(target, (openai.OpenAI, openai.AsyncOpenAI)):
        raise TypeError(
            "wrap_openai() expects an openai.OpenAI / AsyncOpenAI / AzureOpenAI / "
            f"AsyncAzureOpenAI instance, got {type(target).__name__}"
        )
    azure = isinstance(target, (openai.AzureOpenAI, openai.AsyncAzureOpenAI))
    cfg = Config(defaults, recorder, stream_usage, "azure" if azure else "openai")
    if not rewrap(target, cfg):
        _instrument(target, cfg)
    return openai_client


# -- instrumentation ------------------------------------------------------------------


# (api, resource path, methods). Not every SDK release has every one: the Responses API
# arrived in 1.66; before 1.92 `parse` is only on beta.chat.completions (with no `create`
# there; before 1.50 it posts through chat.completions.create: recorded once, see
# core.clientwrap). What a release lacks is simply not patched.
_ENDPOINTS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("chat", ("chat", "completions"), ("create", "parse")),
    # older code calls client.beta.chat.completions.parse: a separate instance
    ("chat", ("beta", "chat", "completions"), ("create", "parse")),
    ("responses", ("responses",), ("create", "parse")),
    ("embeddings", ("embeddings",), ("create",)),
)
_ERRORS = openai.OpenAIError


def _instrument(client: Any, cfg: Config) -> None:
    make = async_method if isinstance(client, openai.AsyncOpenAI) else sync_method
    instrument_copies(client, cfg, _instrument)
    for api, path, names in _ENDPOINTS:
        try:
            res = _resource(client, path)
            begin = functools.partial(_begin, cfg, api)
            for name in names:
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


def _begin(cfg: Config, api: str, kwargs: dict[str, Any]) -> Call | None:
    """Decide whether to record and snapshot what we need. None means pass through."""
    try:
        gfc = recorder_for(cfg, kwargs)
        if gfc is None:
            return None
        call = Call(cfg, gfc, api, kwargs)
        if api == "chat":
            begin_chat(call, kwargs)
        elif api == "responses":
            begin_responses(call, kwargs)
        else:
            call.conv = resolve_call(call, None, None)
        return call
    except Exception as exc:
        _log_once("before the call", exc)
        return None


def _record_api_error(call: Call, exc: BaseException) -> None:
    """The API raised (the caller gets the same exception): record the failed call."""
    inputs = chat_inputs_fn(call) if call.api == "chat" else responses_inputs_fn(call, None)
    record_failure(call, exc, inputs)


def _finish(call: Call, result: Any) -> Any:
    """Record a completed call (or tap a stream). Returns ``result`` unchanged."""
    try:
        if isinstance(result, Stream):
            tap_sync(result, OpenAIStreamTap(call))
        elif isinstance(result, AsyncStream):
            tap_async(result, OpenAIStreamTap(call))
        elif call.api == "chat":
            _record_chat(call, result)
        elif call.api == "responses":
            record_response(call, result, None)
        else:
            record_embeddings(call, result)
    except Exception as exc:
        _log_once("after the call", exc)
    return result

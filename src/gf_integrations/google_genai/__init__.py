"""Greenflash logging for the Google GenAI SDK: ``wrap_genai(client)``.

::

    from google import genai
    from gf_integrations.google_genai import wrap_genai

    client = wrap_genai(genai.Client(), external_user_id="u1")
    client.models.generate_content(model="gemini-2.5-flash", contents="Hello")

``wrap_genai`` returns the very ``genai.Client`` it was given (the Gemini Developer API or
Vertex AI, ``vertexai=True``), or a ``client.aio``. It replaces ``generate_content`` and
``generate_content_stream`` *on the client's own* ``models`` and ``aio.models`` instances;
classes are never patched. Chats (``client.chats`` / ``client.aio.chats``) call those same
instances, so each chat turn is recorded once, its history once (resent history is
recognised). What the installed SDK lacks is left alone.

What reaches the caller is exactly what the bare client returns or raises: the same
response objects and exceptions. A stream is handed back as a generator of ours over the
SDK's (a plain generator, or an async one under ``aio``): the chunks are the SDK's own.

Mapping: ``config.system_instruction`` becomes the conversation's system prompt; the new
user turn a ``user`` message; text parts the reply; ``thought`` parts a ``thought``; each
``functionCall`` a ``tool_call`` (its ``args`` as the input), each ``functionResponse`` an
``observation`` (``tool_error`` for an ``{"error": ...}`` response) under its call. With
automatic function calling the SDK runs the functions itself; the response's
``automatic_function_calling_history`` holds each call and its result, and both are
recorded. ``modelVersion`` is the answering model; ``usage_metadata`` the usage
(``usage_kind="gemini"``), ``finishReason`` and latency go in the reply's properties. Media
parts become placeholders; a part of no known kind is kept marked, with its JSON.
"""

from __future__ import annotations

from typing import Any, TypeVar

try:
    from google import genai
except ImportError:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "gf_integrations.google_genai needs the Google GenAI SDK: "
        "pip install 'gf-integrations[google]'"
    ) from None

from ..core.targets import register_target_resolver
from ..kit import (
    IdentityKwargs,
    Unpack,
    async_method,
    identity_keywords,
    patch,
    rewrap,
    sync_method,
)
from ..kit.calls import MARKER
from .call import Config, log_failure, rating_target
from .flow import begin_for, fail, finish
from .stream import finish_stream

__all__ = ["wrap_genai"]

register_target_resolver(rating_target)

_C = TypeVar("_C")

# (method, api name, how its result is recorded)
_METHODS = (
    ("generate_content", "generate_content", finish),
    ("generate_content_stream", "generate_content_stream", finish_stream),
)


def _async_client_class() -> type | None:
    cls = getattr(getattr(genai, "client", None), "AsyncClient", None)
    return cls if isinstance(cls, type) else None


def wrap_genai(
    genai_client: _C,
    /,
    **identity: Unpack[IdentityKwargs],
) -> _C:
    """Log every ``generate_content`` call of a Google GenAI client to Greenflash.

    Covers ``client.models.generate_content`` / ``generate_content_stream``, their
    ``client.aio.models`` twins, and chats (``client.chats``, ``client.aio.chats``), which
    call them. Returns ``genai_client`` itself. Wrapping again is harmless: it keeps one
    layer and takes the newest settings.

    Args:
        genai_client: a ``google.genai.Client`` (Gemini Developer API or Vertex AI), or
            its ``.aio`` (positional).
        **identity: the identity keywords (:class:`~gf_integrations.kit.IdentityKwargs`):
            ``external_user_id``, ``external_conversation_id``,
            ``external_organization_id``, ``product_id``, ``properties`` and ``client``
            (the :class:`~gf_integrations.GreenflashClient` to record through). Which
            identity wins when several apply: docs/DESIGN.md section 4. Without any id, a
            conversation id is derived from the user and the opening messages (system
            instruction + first user message), so a chat, or a stateless app resending
            its growing history, lands in one conversation, each message stored once.

    Raises:
        TypeError: when ``genai_client`` is not a ``genai.Client`` (or its ``.aio``), or
            ``client=`` is not a ``GreenflashClient``.
    """
    defaults, recorder = identity_keywords("wrap_genai", identity)
    target: Any = genai_client
    async_cls = _async_client_class()
    is_async = async_cls is not None and isinstance(target, async_cls)
    if not (isinstance(target, genai.Client) or is_async):
        raise TypeError(
            f"wrap_genai() expects a google.genai.Client (or its .aio), got {type(target).__name__}"
        )
    api_client = getattr(target, "_api_client", None)
    provider = "vertex_ai" if getattr(api_client, "vertexai", False) else "gemini"
    cfg = Config(defaults, recorder, provider)
    if not rewrap(target, cfg):
        target.__dict__[MARKER] = cfg
        if is_async:
            _instrument(target, cfg, True)
        else:
            _instrument(target, cfg, False)
            aio = _aio(target)
            if aio is not None and not rewrap(aio, cfg):
                aio.__dict__[MARKER] = cfg
                _instrument(aio, cfg, True)
    elif not is_async:
        aio = _aio(target)
        if aio is not None:
            rewrap(aio, cfg)
    return genai_client


def _aio(client: Any) -> Any:
    try:
        return client.aio
    except Exception:  # an SDK without the async client
        return None


def _instrument(client: Any, cfg: Config, is_async: bool) -> None:
    try:
        models = client.models
    except Exception as exc:
        log_failure("wrapping models", exc)
        return
    make = async_method if is_async else sync_method
    for name, api, done in _METHODS:
        original = getattr(models, name, None)
        if callable(original):
            # any exception: the caller gets it as is; the failed call is recorded
            patch(models, name, make(original, begin_for(cfg, api), done, fail, Exception))

"""Greenflash logging for the Anthropic Python client: ``wrap_anthropic(client)``.

::

    from anthropic import Anthropic
    from gf_integrations.anthropic import wrap_anthropic

    client = wrap_anthropic(Anthropic(), external_user_id="u1")
    client.messages.create(model="claude-sonnet-4-6", max_tokens=1024, messages=[...])

``wrap_anthropic`` returns the very object it was given (an ``Anthropic``,
``AsyncAnthropic``, ``AnthropicBedrock``, ``AnthropicVertex`` or an async twin). It replaces
a few bound methods *on that instance*: ``messages.create`` / ``parse`` / ``stream`` and
their ``beta.messages`` mirrors, and ``copy`` / ``with_options`` so that copies are
instrumented too. Classes are never patched. What the installed SDK lacks (``parse``
before anthropic 0.77, ``beta.messages.stream`` before 0.43, a platform client's ``beta``)
is left alone: nothing is added, nothing fails.

What reaches the caller is exactly what the bare client returns or raises: the same
``Message`` objects, the same ``Stream`` / ``MessageStreamManager`` objects (the raw
stream's private ``_iterator`` is tapped; before anthropic 0.43 the stream helper builds its
own stream on the raw stream's response and client, and is handed a view of that client
that notes the events), the same exceptions. Raw-response calls (``with_raw_response``,
``with_streaming_response``, as LangChain's ``ChatAnthropic`` makes them) are recorded when
the caller parses them; read as bytes or lines, they are not.

Mapping: ``system`` becomes the conversation's system prompt; the new user turn a
``user`` message; ``text`` blocks the reply (a ``thought`` when ``tool_use`` blocks
follow); each ``tool_use`` a ``tool_call``; a ``tool_result`` in the next request an
``observation`` (``tool_error`` with ``is_error``) under its call; ``thinking`` a
``thought`` (redacted thinking as a marker, never the signature); ``model``, ``usage``
(cache read/creation tokens included), ``stop_reason`` (as ``finishReason``) and latency
in the reply's properties.
"""

from __future__ import annotations

import functools
from typing import Any, TypeVar

try:
    import anthropic
except ImportError:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "gf_integrations.anthropic needs the Anthropic client: "
        "pip install 'gf-integrations[anthropic]'"
    ) from None

from ..kit import (
    IdentityKwargs,
    Unpack,
    async_method,
    identity_keywords,
    instrument_copies,
    patch,
    rewrap,
    sync_method,
)
from .call import Config
from .flow import begin, fail, finish
from .stream_helper import stream_helper

__all__ = ["wrap_anthropic"]

_C = TypeVar("_C")


def _classes(*names: str) -> tuple[type, ...]:
    return tuple(cls for n in names if isinstance(cls := getattr(anthropic, n, None), type))


# Foundry, AWS and Google Cloud clients subclass Anthropic; Bedrock and Vertex do not.
_SYNC = _classes("Anthropic", "AnthropicBedrock", "AnthropicVertex", "AnthropicBedrockMantle")


_ASYNC = _classes(
    "AsyncAnthropic", "AsyncAnthropicBedrock", "AsyncAnthropicVertex", "AsyncAnthropicBedrockMantle"
)


_PROVIDERS = (("Bedrock", "bedrock"), ("Vertex", "vertex"), ("Foundry", "foundry"))


def wrap_anthropic(
    anthropic_client: _C,
    /,
    **identity: Unpack[IdentityKwargs],
) -> _C:
    """Log every Messages API call of an Anthropic client to Greenflash.

    Returns ``anthropic_client`` itself, still an instance of its class. Copies made with
    ``.with_options(...)`` / ``.copy(...)`` are instrumented with the same settings.
    Wrapping again is harmless: it keeps one layer and takes the newest settings.

    Args:
        anthropic_client: an ``anthropic.Anthropic``, ``AsyncAnthropic``,
            ``AnthropicBedrock``, ``AnthropicVertex`` (or an async twin), positional.
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

    Raises:
        TypeError: when ``anthropic_client`` is not an Anthropic client instance, or
            ``client=`` is not a ``GreenflashClient``.
    """
    defaults, recorder = identity_keywords("wrap_anthropic", identity)
    target: Any = anthropic_client
    if not isinstance(target, _SYNC + _ASYNC):
        raise TypeError(
            "wrap_anthropic() expects an anthropic.Anthropic / AsyncAnthropic / "
            f"AnthropicBedrock / AnthropicVertex instance, got {type(target).__name__}"
        )
    name = type(target).__name__
    provider = next((p for part, p in _PROVIDERS if part in name), "anthropic")
    cfg = Config(defaults, recorder, provider)
    if not rewrap(target, cfg):
        _instrument(target, cfg)
    return anthropic_client


def _instrument(client: Any, cfg: Config) -> None:
    is_async = isinstance(client, _ASYNC)
    instrument_copies(client, cfg, _instrument)
    resources = [("messages", client.messages)]
    try:
        resources.append(("beta.messages", client.beta.messages))
    except Exception:  # a platform client without the beta resource
        pass
    make = async_method if is_async else sync_method
    for api, res in resources:
        start = functools.partial(begin, cfg, api)
        for name in ("create", "parse"):
            original = getattr(res, name, None)
            if callable(original):
                patch(res, name, make(original, start, finish, fail, anthropic.AnthropicError))
        helper = getattr(res, "stream", None)
        if callable(helper):
            patch(res, "stream", stream_helper(helper, start, is_async))

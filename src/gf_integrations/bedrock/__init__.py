"""Greenflash logging for Amazon Bedrock through boto3: ``wrap_bedrock(client)``.

::

    import boto3
    from gf_integrations.bedrock import wrap_bedrock

    client = wrap_bedrock(boto3.client("bedrock-runtime"), external_user_id="u1")
    client.converse(modelId="amazon.nova-lite-v1:0", messages=[...])

``wrap_bedrock`` returns the very client it was given (a ``bedrock-runtime`` client). It
replaces four bound methods *on that instance*: ``converse``, ``converse_stream``,
``invoke_model`` and ``invoke_model_with_response_stream`` (those the installed botocore
has). Other clients, and the class botocore generated, are untouched.

Why instance methods and not botocore's event hooks (``after-call.bedrock-runtime.*``):
a handler runs inside botocore's request path, where what it raises reaches the caller
and what it returns can stand in for the HTTP response; a method around the call sees the
caller's own arguments and exactly what the bare method returns or raises, and re-raises it
untouched. It is also the shape of the other model-client wrappers (one call, one record).

What reaches the caller is what the bare client returns or raises: the same response dict,
the same ``EventStream`` objects (tapped in place: see :mod:`.stream`), the same
``ClientError`` / ``BotoCoreError``. One change, by necessity: ``invoke_model``'s
``body`` is read at once and the response given a fresh ``StreamingBody`` holding the same
bytes (a read that fails raises the same exception from the caller's ``read()``).

Mapping: ``system`` becomes the conversation's system prompt; the new user turn a ``user``
message; ``text`` blocks the reply (a ``thought`` beside ``toolUse`` blocks); each
``toolUse`` a ``tool_call``; a ``toolResult`` in the next request an ``observation``
(``tool_error`` with ``status: error``) under its call; ``reasoningContent`` a ``thought``.
Usage is the provider's own: Converse ``usage`` (``usage_kind="bedrock"``), or an invoke
body's (``"anthropic"``, ``"bedrock_nova"``, ``"bedrock_llama"``). ``invoke_model`` bodies
of another format are recorded verbatim with ``properties.unknownBodyFormat: true``.
``gf.rate(response)`` rates the answer a response (or its request id) produced.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

try:
    import botocore.client
    import botocore.exceptions
    from botocore.eventstream import EventStream
except ImportError:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "gf_integrations.bedrock needs boto3: pip install 'gf-integrations[bedrock]'"
    ) from None

from ..core.targets import register_target_resolver
from ..kit import (
    IdentityKwargs,
    Unpack,
    identity_keywords,
    patch,
    record_failure,
    recorder_for,
    resolve_identity,
    rewrap,
    sync_method,
)
from ..kit.calls import MARKER
from . import converse, invoke
from .call import Call, Config, log_failure, rating_target, request_id
from .stream import BedrockStreamTap, tap_event_stream

__all__ = ["wrap_bedrock"]

register_target_resolver(rating_target)

_C = TypeVar("_C")
_ERRORS = (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError)


def wrap_bedrock(
    bedrock_client: _C,
    /,
    **identity: Unpack[IdentityKwargs],
) -> _C:
    """Log every Converse and InvokeModel call of a boto3 ``bedrock-runtime`` client.

    Returns ``bedrock_client`` itself. Wrapping again is harmless: it keeps one layer and
    takes the newest settings.

    Args:
        bedrock_client: ``boto3.client("bedrock-runtime", ...)`` (positional).
        **identity: the identity keywords (:class:`~gf_integrations.kit.IdentityKwargs`):
            ``external_user_id``, ``external_conversation_id``,
            ``external_organization_id``, ``product_id``, ``properties`` and ``client``.
            Which identity wins when several apply: docs/DESIGN.md section 4. Without any
            id, a conversation id is derived from the user and the opening messages, so a
            stateless app that resends its growing history lands in one conversation.

    Raises:
        TypeError: when ``bedrock_client`` is not a ``bedrock-runtime`` client, or
            ``client=`` is not a ``GreenflashClient``.
    """
    defaults, recorder = identity_keywords("wrap_bedrock", identity)
    target: Any = bedrock_client
    service = None
    if isinstance(target, botocore.client.BaseClient):
        service = getattr(target.meta.service_model, "service_name", None)
    if service != "bedrock-runtime":
        raise TypeError(
            "wrap_bedrock() expects a boto3 'bedrock-runtime' client, got "
            + (f"a {service!r} client" if service else type(target).__name__)
        )
    cfg = Config(defaults, recorder, "bedrock")
    if not rewrap(target, cfg):
        target.__dict__[MARKER] = cfg
        for api, (begin, finish, fail) in _APIS.items():
            original = getattr(target, api, None)
            if callable(original):  # absent before botocore 1.34.116 (Converse): left alone
                start = _starter(cfg, api, begin)
                patch(target, api, sync_method(original, start, finish, fail, _ERRORS))
    return bedrock_client


def _starter(
    cfg: Config, api: str, begin: Callable[[Call, dict[str, Any]], Any]
) -> Callable[[dict[str, Any]], Call | None]:
    def start(kwargs: dict[str, Any]) -> Call | None:
        """Decide whether to record and snapshot the request. None means pass through."""
        try:
            gfc = recorder_for(cfg, kwargs)
            if gfc is None:
                return None
            call = Call(cfg, gfc, api, kwargs)
            opening = begin(call, kwargs)
            call.conv = resolve_identity(
                call,
                native_conversation_id=None,
                native_user_id=None,
                opening=opening,
                prefix="bedrock",
            )
            return call
        except Exception as exc:
            log_failure("before the call", exc)
            return None

    return start


def _guarded(record: Callable[[Call, Any], None]) -> Callable[[Call, Any], Any]:
    def finish(call: Call, response: Any) -> Any:
        """Record a completed call (or tap its stream). Returns ``response`` unchanged."""
        try:
            record(call, response)
        except Exception as exc:
            log_failure("after the call", exc)
        return response

    return finish


def _tapped(
    key: str, recorder: Callable[[BedrockStreamTap, str, BaseException | None], None]
) -> Callable[[Call, Any], None]:
    def tap(call: Call, response: Any) -> None:
        stream = response.get(key)
        if not isinstance(stream, EventStream):
            raise TypeError(f"no EventStream in the response's {key!r}")
        tap_event_stream(stream, BedrockStreamTap(call, request_id(response), recorder))

    return tap


def _converse_failed(call: Call, exc: BaseException) -> None:
    record_failure(call, exc, converse.converse_inputs(call))


def _invoke_failed(call: Call, exc: BaseException) -> None:
    record_failure(call, exc, invoke.invoke_inputs(call))


# one row per API: snapshot the request, record the response, record a failure
_APIS: dict[str, tuple[Any, Any, Any]] = {
    "converse": (
        converse.begin_converse,
        _guarded(converse.record_converse),
        _converse_failed,
    ),
    "converse_stream": (
        converse.begin_converse,
        _guarded(_tapped("stream", converse.record_converse_stream)),
        _converse_failed,
    ),
    "invoke_model": (invoke.begin_invoke, _guarded(invoke.record_invoke), _invoke_failed),
    "invoke_model_with_response_stream": (
        invoke.begin_invoke,
        _guarded(_tapped("body", invoke.record_invoke_stream)),
        _invoke_failed,
    ),
}

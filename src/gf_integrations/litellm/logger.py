"""``GreenflashLogger``: a LiteLLM ``CustomLogger`` that records each chat completion."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from litellm.integrations.custom_logger import CustomLogger

from ..client import GreenflashClient
from ..core.events import LLMCall
from ..kit import (
    CallState,
    IdentityKwargs,
    Unpack,
    WrapConfig,
    identity_keywords,
    lazy_usage,
    recorder_for,
    resolve_identity,
    wrapper_failed,
)
from ..kit.openai_format import chat_messages, chat_opening
from . import read
from .state import (
    Pending,
    current_call,
    first_time,
    no_messages,
    pending,
    remember_answer,
)


class _Config(WrapConfig):
    __slots__ = ()
    label = "LiteLLM"


def _failed(where: str, exc: BaseException) -> None:
    wrapper_failed("LiteLLM", where, exc)


class GreenflashLogger(CustomLogger):
    """Records every LiteLLM chat completion (``completion`` / ``acompletion``, streamed
    or not, and the calls that fail) as a Greenflash conversation::

        import litellm
        from gf_integrations.litellm import GreenflashLogger

        litellm.callbacks = [GreenflashLogger(external_user_id="u1")]

    On the LiteLLM proxy: an instance in a module next to ``config.yaml``, named in
    ``litellm_settings: callbacks: ["module.instance"]``.

    What is recorded: the request's messages (system prompt, history, tool calls and tool
    results), the reply (text, tool calls, reasoning) with the answering model, usage
    (``usage_kind="openai_chat"``), latency, finish reason and provider; a failure as an
    ``llm`` message with its error. A stream is recorded once, from the response LiteLLM
    assembles when it ends. A call LiteLLM makes through a client wrapped with
    ``wrap_openai`` is recorded once, here.

    Identity (docs/DESIGN.md section 4): these keywords, then ``gf.conversation(...)``,
    then LiteLLM's own ids: ``metadata={"session_id": ...}`` or ``litellm_session_id=``
    for the conversation, ``metadata={"user_id" | "user": ...}`` or the request's ``user``
    for the user; without a conversation id, one is derived from the user and the opening
    messages (a stateless app resending its history stays in one conversation).

    The hooks never raise into LiteLLM, and only keep references: the mapping runs later.
    """

    def __init__(self, **identity: Unpack[IdentityKwargs]) -> None:
        """Args: the identity keywords (:class:`~gf_integrations.kit.IdentityKwargs`):
        ``external_user_id``, ``external_conversation_id``, ``external_organization_id``,
        ``product_id``, ``properties`` and ``client`` (the GreenflashClient to record
        through; default: the configured one).

        Raises:
            TypeError: an unknown keyword or a wrong ``client=``.
        """
        defaults, client = identity_keywords("GreenflashLogger", identity)
        super().__init__()
        self._gf_cfg = _Config(defaults, client, "litellm")

    def __repr__(self) -> str:
        return f"GreenflashLogger({self._gf_cfg.defaults!r})"

    # -- LiteLLM's hooks ----------------------------------------------------------------

    def log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
        """Right before the provider request, on the caller's thread: snapshot and resolve."""
        try:
            self._begin(messages, kwargs)
        except Exception as exc:
            _failed("before the call", exc)

    async def async_log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
        """The async twin of :meth:`log_pre_api_call` (the first of the two to run wins)."""
        try:
            self._begin(messages, kwargs)
        except Exception as exc:
            _failed("before the call", exc)

    def log_post_api_call(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """The provider answered: the call is no longer in flight (see the capture probe)."""
        try:
            cid = read.call_id(kwargs) if isinstance(kwargs, Mapping) else None
            p = pending.get(cid) if cid is not None else None
            if p is not None:
                p.in_flight = False
        except Exception as exc:
            _failed("after the request", exc)

    def log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """A call (or a whole stream) succeeded."""
        self._success(kwargs, response_obj, start_time, end_time)

    async def async_log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """A call (or a whole stream) of ``acompletion`` succeeded."""
        self._success(kwargs, response_obj, start_time, end_time)

    def log_failure_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """A call failed; LiteLLM raises the error to its caller itself."""
        self._failure(kwargs, start_time, end_time)

    async def async_log_failure_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """A call of ``acompletion`` failed."""
        self._failure(kwargs, start_time, end_time)

    # -- one call -----------------------------------------------------------------------

    def _state(self, kwargs: Mapping[str, Any], messages: Sequence[Any]) -> CallState | None:
        """The call's state with its identity resolved, or None when it is not recorded."""
        gfc: GreenflashClient | None = recorder_for(self._gf_cfg, kwargs)
        if gfc is None:
            return None
        model = kwargs.get("model")
        call = CallState(self._gf_cfg, gfc, "chat", {"model": model})
        cid = read.call_id(kwargs)
        if cid is not None:
            # LiteLLM's own id: a call handed to two hooks is the same event
            call.key = f"litellm-{cid}"
        conversation, user = read.native_ids(kwargs)
        call.conv = resolve_identity(
            call,
            native_conversation_id=conversation,
            native_user_id=user,
            opening=lambda: chat_opening(messages),
            prefix="litellm",
        )
        return call

    def _begin(self, messages: Any, kwargs: Any) -> None:
        if not isinstance(kwargs, Mapping) or not read.is_chat(kwargs):
            return
        cid = read.call_id(kwargs)
        if cid is None:
            return
        existing = pending.get(cid)
        if existing is not None:  # a retry, or both pre-call hooks: one snapshot
            existing.in_flight = True
            current_call.set(cid)
            return
        # our own mark of an earlier call must not hide this one from recorder_for
        current_call.set(None)
        # the caller may append the reply to its list before a logging thread reads it
        snapshot = list(messages) if isinstance(messages, (list, tuple)) else []
        pending.put(cid, Pending(self._state(kwargs, snapshot), snapshot))
        current_call.set(cid)

    def _take(self, kwargs: Mapping[str, Any]) -> tuple[CallState | None, Sequence[Any]]:
        """The call's state kept by the pre-call hook, or made now (a cache hit, or a
        release that skipped the hook)."""
        cid = read.call_id(kwargs)
        p = pending.get(cid) if cid is not None else None
        if p is not None:
            return p.call, p.messages
        raw = kwargs.get("messages")
        messages = list(raw) if isinstance(raw, (list, tuple)) else []
        return self._state(kwargs, messages), messages

    def _claim(
        self, kwargs: Any, outcome: str
    ) -> tuple[str | None, CallState, Sequence[Any]] | None:
        """A chat call's id, state and messages, taken from the pending ones; None when it
        is not a chat call, not ours, or its ``outcome`` was recorded already."""
        if not isinstance(kwargs, Mapping) or not read.is_chat(kwargs):
            return None
        cid = read.call_id(kwargs)
        call, messages = self._take(kwargs)
        if cid is not None:
            pending.pop(cid)
        if call is None or not first_time(outcome, cid):
            return None
        return cid, call, messages

    def _success(self, kwargs: Any, response: Any, start_time: Any, end_time: Any) -> None:
        try:
            claimed = self._claim(kwargs, "ok")
            if claimed is None:
                return
            cid, call, messages = claimed
            if read.first_choice(response) is None:
                # a stream's hook without the assembled response
                response = kwargs.get("complete_streaming_response") or response
            choice = read.first_choice(response)
            props = call.properties(getattr(response, "id", None))
            if cid is not None:
                props["litellmCallId"] = cid
            if kwargs.get("stream") is True:
                props["stream"] = True
            if kwargs.get("cache_hit") is True:
                props["cacheHit"] = True
            model = getattr(response, "model", None)
            call.gfc.record(
                LLMCall(
                    call.conv,
                    call.key,
                    messages=functools.partial(chat_messages, messages),
                    reply=functools.partial(read.reply, response),
                    model=model if isinstance(model, str) and model else call.model,
                    usage=lazy_usage(getattr(response, "usage", None)),
                    usage_kind="openai_chat",
                    provider=read.provider(kwargs),
                    finish_reason=getattr(choice, "finish_reason", None),
                    started_at=read.at(start_time),
                    ended_at=read.at(end_time),
                    properties=props,
                )
            )
            remember_answer(getattr(response, "id", None), call)
        except Exception as exc:
            _failed("recording a reply", exc)

    def _failure(self, kwargs: Any, start_time: Any, end_time: Any) -> None:
        try:
            claimed = self._claim(kwargs, "error")
            if claimed is None:
                return
            cid, call, messages = claimed
            error = kwargs.get("exception")
            props = call.properties()
            if cid is not None:
                props["litellmCallId"] = cid
            status = getattr(error, "status_code", None)
            if isinstance(status, int):
                props["statusCode"] = status
            call.gfc.record(
                LLMCall(
                    call.conv,
                    call.key,
                    messages=functools.partial(chat_messages, messages)
                    if messages
                    else no_messages,
                    model=call.model,
                    provider=read.provider(kwargs),
                    started_at=read.at(start_time),
                    ended_at=read.at(end_time),
                    error=error if isinstance(error, BaseException) else "LiteLLM call failed",
                    properties=props,
                )
            )
        except Exception as exc:
            _failed("recording an error", exc)

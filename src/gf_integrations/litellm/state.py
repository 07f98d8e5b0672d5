"""What the logger keeps between LiteLLM's hooks of one call, keyed by ``litellm_call_id``.

LiteLLM calls ``log_pre_api_call`` on the caller's thread, in the caller's context, right
before the provider request; the success hooks may run later on a logging thread without
that context (sync streams). So the pre-call hook snapshots the request (the messages: the
caller may append the reply to its list before a logging thread reads it) and resolves the
identity (``gf.conversation(...)`` scopes are context variables), and the success or
failure hook records with what it kept.

The same pre-call mark tells the model-client wrappers that LiteLLM records the current
call (the capture probe): a wrapped ``openai`` client handed to LiteLLM (``client=``) does
not record it a second time.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Sequence
from typing import Any

from ..core.events import ChatMessage
from ..kit import (
    BoundedMap,
    CallState,
    ResponseAnswers,
    RunRegistry,
    attribute_of,
    register_capture_probe,
)

#: calls whose hooks never came back (a stream the caller abandoned) are forgotten after this
PENDING_TTL = 3600.0
MAX_PENDING = 10_000
MAX_DONE = 10_000


class Pending:
    """One LiteLLM call between its pre-call hook and its success or failure hook.

    ``call`` is None when it is not recorded (Greenflash disabled, or an outer
    integration such as LangChain records it).
    """

    __slots__ = ("call", "in_flight", "messages", "t0")

    def __init__(self, call: CallState | None, messages: Sequence[Any]) -> None:
        self.call = call
        self.messages = messages
        # the provider request is out: between the pre-call and the post-call hook
        self.in_flight = True
        self.t0 = time.monotonic()


def _stamp(p: Pending) -> float:
    return p.t0


pending: RunRegistry[str, Pending] = RunRegistry(
    cap=MAX_PENDING, ttl=PENDING_TTL, stamp=_stamp, sweep_every=5.0
)

# The LiteLLM call made in this context (set by the pre-call hook): the probe asks whether
# it is still in flight, so the mark left behind in the caller's context after the call
# answers False.
current_call: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "gf_litellm_current_call", default=None
)


def _capture_probe() -> bool:
    cid = current_call.get()
    if cid is None:
        return False
    p = pending.get(cid)
    return p is not None and p.call is not None and p.in_flight


register_capture_probe(_capture_probe)


# Calls already recorded: LiteLLM may hand one call to both a sync and an async hook of
# the same logger (releases differ); the first records it. Keys: ("ok" | "error", call id).
_done: BoundedMap[tuple[str, str], bool] = BoundedMap(MAX_DONE)
_done_lock = threading.Lock()


def first_time(kind: str, cid: str | None) -> bool:
    """True the first time ``(kind, cid)`` is seen (always True without an id)."""
    if cid is None:
        return True
    key = (kind, cid)
    with _done_lock:
        if key in _done:
            return False
        _done.put(key, True)
    return True


# response id -> the answer it produced, for gf.rate(response) (see core/targets.py): a
# response id, or a LiteLLM response object (its ``id``)
answers = ResponseAnswers(attribute_of("litellm.", "id"))
remember_answer = answers.remember
rating_target = answers.target


def no_messages() -> list[ChatMessage]:
    """A call whose request messages were not seen."""
    return []

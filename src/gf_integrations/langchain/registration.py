"""Process-wide registrations: :func:`instrument` / :func:`uninstrument`, ``gf.rate`` targets."""

from __future__ import annotations

import contextvars
import threading
from typing import Any
from uuid import UUID

from langchain_core.tracers.context import register_configure_hook

from ..core.targets import AnswerRef, register_target_resolver
from ..kit import IdentityKwargs, Unpack
from .handler import GreenflashCallbackHandler
from .runs import answers

_hook_var: contextvars.ContextVar[GreenflashCallbackHandler | None] = contextvars.ContextVar(
    "gf_langchain_handler", default=None
)
_hook_lock = threading.Lock()
_hook_registered = False


def instrument(
    *,
    capture_steps: bool = False,
    **identity: Unpack[IdentityKwargs],
) -> GreenflashCallbackHandler:
    """Record every LangChain/LangGraph run started in this context, without passing callbacks.

    Uses langchain-core's ``register_configure_hook`` with a ContextVar: the handler is
    seen by runs started in the current context and in contexts copied from it (asyncio
    tasks, LangChain's executors). A thread started with a plain ``threading.Thread``
    before or without copying the context does not see it: call :func:`instrument` there
    too, or pass the handler in ``config``. Idempotent: calling it again with the same
    arguments returns the installed handler. Returns the handler.

    Args:
        capture_steps: as for :class:`GreenflashCallbackHandler`.
        **identity: the identity keywords, as for :class:`GreenflashCallbackHandler`.
    """
    global _hook_registered
    with _hook_lock:
        if not _hook_registered:
            register_configure_hook(_hook_var, inheritable=True)
            _hook_registered = True
    handler = GreenflashCallbackHandler(capture_steps=capture_steps, **identity)
    current = _hook_var.get()
    if (
        current is not None
        and current.identity == handler.identity
        and current.client is handler.client
        and current.capture_steps == capture_steps
    ):
        return current
    _hook_var.set(handler)
    return handler


def uninstrument() -> None:
    """Stop the handler installed by :func:`instrument` (in this context)."""
    _hook_var.set(None)


def _rating_target(target: Any) -> AnswerRef | None:
    """``gf.rate`` targets: a root run id (the ``run_id`` of an invoke's config, as a UUID
    or a string) or a handler (its last root run)."""
    if isinstance(target, GreenflashCallbackHandler):
        rid = target._last_root
        return None if rid is None else answers.get(rid)
    if isinstance(target, UUID):
        return answers.get(target.int)
    if isinstance(target, str):
        try:
            return answers.get(UUID(target).int)
        except ValueError:
            return None
    return None


register_target_resolver(_rating_target)

"""Working around langchain-core's async ``on_llm_start`` dispatch for an inline handler.

``AsyncCallbackManager.on_llm_start`` (langchain-core up to at least 1.8.3, upstream issue
langchain-ai/langchain#39633) hands the start event of a completion-style LLM to the
``run_inline`` handlers *or else* to the others, never both. Our handler is inline (see
:mod:`gf_integrations.langchain`), so attaching it would make every non-inline handler
(``astream_events``, ``astream_log``, a user's ``AsyncCallbackHandler``) miss that event.

The handler's ``run_inline`` is therefore a property that asks :func:`inline_answer` when it
is read by that method's own comprehensions (recognised by the id of the reading frame's
code object, so the check costs one frame lookup and an int set lookup everywhere else).
It answers False there when that lets the other handlers get the event: the event then
goes through the "others" branch, whose ``ahandle_event`` still runs our hook inline (no
executor thread). The context is unchanged too: ``BaseLLM.agenerate`` already runs each
``on_llm_start`` in an ``asyncio.gather`` task, so the hook never ran in the model's own
context on this path.

When another handler is inline too (LangSmith's ``LangChainTracer``, LangGraph's stream
handlers), langchain-core starves the non-inline handlers with or without us, so we stay
inline and change nothing. When langchain-core's method no longer has the either/or
branch, nothing here applies.
"""

from __future__ import annotations

import inspect
from types import CodeType, FrameType
from typing import Any

from langchain_core.callbacks.manager import AsyncCallbackManager

__all__ = ["ASYNC_LLM_START_CODE_IDS", "inline_answer"]


def _codes() -> tuple[CodeType | None, tuple[CodeType, ...]]:
    method = AsyncCallbackManager.on_llm_start
    code = getattr(method, "__code__", None)
    if not isinstance(code, CodeType):
        return None, ()
    try:
        source = inspect.getsource(method)
    except (OSError, TypeError):  # no source shipped: assume the known shape
        source = "if inline_handlers:"
    if "if inline_handlers:" not in source:
        return None, ()  # fixed upstream: every handler gets the event
    # Python < 3.12 runs each comprehension in its own code object (PEP 709 inlines them)
    nested = (c for c in code.co_consts if isinstance(c, CodeType))
    return code, (code, *nested)


_METHOD_CODE, _CODES = _codes()
# ids, not code objects: hashing a code object hashes its contents (~2 us a read); the
# objects stay alive in _CODES, so their ids stay theirs
ASYNC_LLM_START_CODE_IDS = frozenset(id(c) for c in _CODES)


def inline_answer(frame: FrameType, ours: type) -> bool:
    """What ``run_inline`` should answer to ``AsyncCallbackManager.on_llm_start``.

    ``frame`` is the reader's frame (the method or one of its comprehensions); ``ours`` is
    the handler class (every instance of it answers the same).
    """
    method_frame: FrameType | None = frame
    while method_frame is not None and method_frame.f_code is not _METHOD_CODE:
        method_frame = method_frame.f_back
    manager: Any = method_frame.f_locals.get("self") if method_frame is not None else None
    others = [h for h in getattr(manager, "handlers", None) or () if not isinstance(h, ours)]
    # inline when nobody is starved by it, or when a foreign inline handler starves the
    # others with or without us
    return not others or any(h.run_inline for h in others)

"""LangChain and LangGraph: :class:`GreenflashCallbackHandler` and :func:`instrument`.

Usage::

    from gf_integrations.langchain import GreenflashCallbackHandler
    chain.invoke(x, config={"callbacks": [GreenflashCallbackHandler(external_user_id="u1")]})

    # or for everything that runs in this context (and its asyncio tasks / copies):
    from gf_integrations.langchain import instrument
    instrument(external_user_id="u1")

The data's path and the identity order are in docs/DESIGN.md (sections 3 and 4). Modules:
``handler`` (the public class, one guarded hook per callback), ``runs`` (open runs in a
bounded registry), ``record`` (ended runs -> neutral events), ``convert`` (messages and
documents -> neutral dicts, on the worker), ``prompts`` (``ChatPromptTemplate`` -> system
prompt components), ``registration`` (:func:`instrument`), ``_dispatch`` (langchain-core's
async ``on_llm_start`` either/or dispatch).

What is LangChain-specific:

* One sync ``BaseCallbackHandler`` (not ``BaseTracer``: a reused tracer keeps ~1 KB per
  invoke and costs several times more), for ``invoke`` / ``ainvoke`` / ``batch`` /
  ``stream`` / ``astream`` / ``astream_events``.
* ``run_inline`` is True: under ``ainvoke`` LangChain would otherwise hop every callback
  onto an executor thread and run it in a *copy* of the context. Inline, the hooks run on
  the event-loop thread in the task's own context, so the ``gf.conversation(...)`` scope
  read at the root run is the caller's and the LLM-run marker below is visible to the code
  the model runs (not for an async completion LLM: langchain-core runs its start callbacks
  in ``asyncio.gather`` tasks). It is False only where langchain-core's async
  ``on_llm_start`` would otherwise starve the other handlers (see ``_dispatch``).
* A run whose parent no handler saw is a root; its conversation: handler arguments >
  ``gf.conversation(...)`` > metadata ``greenflash_conversation_id`` /
  ``greenflash_user_id`` / ``greenflash_organization_id`` > LangGraph ``thread_id`` >
  client defaults > one generated id per root run.
* A ``ChatPromptTemplate`` seen in the tree becomes the system prompt's components when
  the model received exactly its rendering (``prompts``). Retrievals before the turn's
  first model call (RAG chains) are held until that call ends, so their text lands in the
  answer's ``context``. LangGraph ``GraphBubbleUp`` (interrupts) is not an error.
* Cross-integration dedup: while a chat/LLM run is in flight, a ContextVar holds its run
  id (set in ``on_chat_model_start`` / ``on_llm_start``, which run in the model's own
  context); the registered capture probe answers True only while that run is still open,
  so a wrapped OpenAI client called by the model is not logged twice, while OpenAI calls
  made by plain chain steps still are. (``var_child_runnable_config`` says a runnable with
  our handler is executing, not that one of our *LLM* runs is, and a bare
  ``model.invoke`` does not set it.)
"""

from __future__ import annotations

try:
    import langchain_core.callbacks  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    raise ImportError(
        "gf_integrations.langchain needs langchain-core: pip install 'gf-integrations[langchain]'"
    ) from None

from .handler import GreenflashCallbackHandler
from .registration import instrument, uninstrument
from .runs import run_state_size
from .runs import sweep as _sweep  # noqa: F401 - tests force a sweep

__all__ = ["GreenflashCallbackHandler", "instrument", "run_state_size", "uninstrument"]

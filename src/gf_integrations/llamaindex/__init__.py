"""LlamaIndex integration: :class:`GreenflashInstrumentor` on the instrumentation API.

Usage::

    from gf_integrations.llamaindex import GreenflashInstrumentor

    GreenflashInstrumentor(external_user_id="u1").instrument()   # once, at start-up

    with gf_integrations.conversation(external_conversation_id="c1", external_user_id="u1"):
        query_engine.query("What is the capital of France?")

Conversation identity follows docs/DESIGN.md section 4; LlamaIndex's own ids are
``instrument_tags({"gf.conversation_id": ..., "gf.user_id": ..., "gf.organization_id": ...})``,
and without any id each root span is its own conversation. It is captured once, when a
root span starts (in the host's context), and kept with the root, so work that LlamaIndex
moves to other tasks or threads stays in its conversation.

What is recorded: LLM chat/completion calls (system prompt once, history, reply, model,
usage, latency; streams at their end event), query engines (the query as the user's
words, retrievals, the answer as ``final_response`` with the retrieved text as context),
chat engines, agents (``FunctionAgent``/``AgentWorkflow``: tool calls, results, errors,
final answer), prompt templates (components with ``{{var}}`` placeholders + variables),
embeddings (counts and dimensions only; an index build as one summary; a retrieval's query
vector is part of its retrieval message) and, with ``capture_steps=True``, workflow steps.
Handlers never raise into LlamaIndex (its dispatcher would swallow errors silently; we
log each kind once instead).

Modules: ``instrumentor`` (the public class and the dispatcher handlers), ``engine`` (span
tree, event routing, sweep), ``events`` (one handler per event class), ``record`` (state
and what is recorded), ``state``, ``convert``, ``prompts``. Layers, identity rules and the
hot-path rule: docs/DESIGN.md.
"""

from __future__ import annotations

# first: without llama-index-core (or with a too-old one) this raises the ImportError that
# says what to install, before the modules below fail on their own imports
from . import _requires  # noqa: F401
from .engine import _DISPATCH as _DISPATCH
from .instrumentor import GreenflashInstrumentor
from .state import _SPAN_TTL as _SPAN_TTL
from .state import _SPANS_MAX as _SPANS_MAX  # read at each span: assigning it tunes the cap
from .state import TAG_CONVERSATION as TAG_CONVERSATION
from .state import TAG_ORGANIZATION as TAG_ORGANIZATION
from .state import TAG_USER as TAG_USER

__all__ = ["GreenflashInstrumentor"]

"""Ended runs -> neutral events, on the caller's thread (references only, no conversion).

Also which chain runs are worth a Step, and which errors are control flow, not errors.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import sys
from collections.abc import Mapping
from typing import Any, Literal

from ..core.events import LLMCall, Retrieval, Step, ToolResult
from .convert import to_chats
from .prompts import template_prompt
from .runs import ChainRun, LLMRun, RetrieverRun, ToolRun, answers, at

_CANCELLED = (asyncio.CancelledError, concurrent.futures.CancelledError)

# Runnables of LangChain and LangGraph plumbing: not steps of the user's app.
INTERNAL_CHAINS = frozenset(
    {
        "RunnableSequence",
        "RunnableParallel",
        "RunnableLambda",
        "RunnablePassthrough",
        "RunnableAssign",
        "RunnablePick",
        "RunnableBranch",
        "RunnableWithFallbacks",
        "RunnableEach",
        "RunnableBinding",
        "RunnableCallable",
        "RunnableWithMessageHistory",
        "ChannelWrite",
        "ChannelRead",
        "Prompt",
        "call_model",
        "acall_model",
        "should_continue",
        "insert_history",
        "load_history",
        "check_sync_or_async",
    }
)


def is_bubble_up(error: BaseException) -> bool:
    """LangGraph control flow (interrupt(), Command parent jumps): not an error."""
    # only LangGraph raises it, so it is imported when one is raised
    errors = sys.modules.get("langgraph.errors")
    bubble_up = getattr(errors, "GraphBubbleUp", None)
    return isinstance(bubble_up, type) and isinstance(error, bubble_up)


def is_step(
    name: Any, tags: list[str] | None, metadata: Mapping[str, Any] | None, run_type: Any
) -> bool:
    """Whether a non-root chain run is a meaningful step (user chain or LangGraph node)."""
    if run_type in ("prompt", "parser"):
        return False
    node = metadata.get("langgraph_node") if metadata else None
    if node is not None:
        # a graph node run carries a graph:step:N tag; runnables inside a node do not
        return name == node and any(t.startswith("graph:step:") for t in tags or ())
    return name not in INTERNAL_CHAINS


def step_properties(metadata: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The LangGraph node and step of a Step, as its properties."""
    if not metadata:
        return None
    props = {k: metadata[k] for k in ("langgraph_node", "langgraph_step") if k in metadata}
    return props or None


def record_llm(
    run: LLMRun,
    key: str,
    model: Any,
    reply: Any,
    usage: Any,
    finish: Any,
    error: BaseException | None,
    usage_kind: str | None = None,
) -> None:
    """Record a model call; retrievals the tree held are sent between its history and reply."""
    root = run.root
    messages = run.messages
    system_prompt = None
    if root.prompt_template is not None and isinstance(messages, list):
        system_prompt = template_prompt(root.prompt_template, messages)
    if isinstance(messages, list):
        messages = functools.partial(to_chats, messages)
    partial = error is not None and reply is not None
    if isinstance(error, (GeneratorExit, *_CANCELLED)):
        # abandoned stream / cancelled task: keep what was said, not an error
        partial, error = True, None
    held = root.held_retrievals
    if held:
        # retrievals made before the turn's user message was known (RAG chains): emit
        # the history first, then the retrievals, then the reply, so that the retrieved
        # text lands in the reply's context
        root.held_retrievals = None
        root.client.record(LLMCall(conv=root.conv, key=key, messages=messages or ()))
        for ev in held:
            root.client.record(ev)
    root.llm_seen = True
    if reply is not None:  # the root's answer so far: gf.rate(run_id) rates it
        answers.put(root.run_id.int, root.conv, key)
    root.client.record(
        LLMCall(
            conv=root.conv,
            key=key,
            messages=messages or (),
            reply=reply,
            model=model if model.__class__ is str else None,
            usage=usage if usage is not None and isinstance(usage, Mapping) else None,
            usage_kind=usage_kind,
            provider=run.provider,
            finish_reason=finish if finish.__class__ is str else None,
            started_at=at(run.t0),
            error=error,
            partial=partial,
            system_prompt=system_prompt,
        )
    )


def record_step_start(
    run: ChainRun, key: str, name: str, inputs: Any, metadata: Mapping[str, Any] | None
) -> None:
    """Record a chain run as a Step; its children's steps nest under it."""
    root = run.root
    root.client.record(
        Step(
            root.conv,
            key,
            name,
            "start",
            data=dict(inputs) if isinstance(inputs, Mapping) else inputs,
            parent_key=run.step,
            properties=step_properties(metadata),
        )
    )
    run.name = name
    run.step, run.parent_step = key, run.step  # own key for children; the parent's kept


def record_step_end(run: ChainRun, key: str, data: Any, phase: Literal["end", "error"]) -> None:
    """The end (``"end"`` / ``"error"``) of a chain run recorded as a Step."""
    root = run.root
    root.client.record(
        Step(root.conv, key, str(run.name), phase, data=data, parent_key=run.parent_step)
    )


def record_tool(run: ToolRun, key: str, call_id: Any, output: Any, error: Any) -> None:
    """A tool's observation or error."""
    root = run.root
    root.client.record(
        ToolResult(
            root.conv,
            key,
            run.name,
            call_id if isinstance(call_id, str) else None,
            input=run.input,
            output=output,
            error=error,
            started_at=at(run.t0),
        )
    )


def record_retrieval(
    run: RetrieverRun, key: str, documents: Any, error: BaseException | None
) -> None:
    """A retrieval; held back while the tree has made no model call yet."""
    root = run.root
    event = Retrieval(
        root.conv,
        key,
        run.query,
        documents,
        retriever=run.name,
        started_at=at(run.t0),
        error=error,
    )
    if root.llm_seen or root.run_id.hex == key:
        root.client.record(event)
    else:
        # no model call yet in this tree: the user message is unknown, hold it (see
        # record_llm); released at the root's end if no model call comes
        root.held_retrievals = [*(root.held_retrievals or ()), event]

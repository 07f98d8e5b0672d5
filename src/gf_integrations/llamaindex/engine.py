"""The LlamaIndex engine: span tree, root lifetimes, event routing and the sweep."""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Mapping
from typing import Any

from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.embedding import EmbeddingEndEvent, EmbeddingStartEvent
from llama_index.core.instrumentation.events.exception import ExceptionEvent
from llama_index.core.instrumentation.events.llm import (
    LLMChatEndEvent,
    LLMChatInProgressEvent,
    LLMChatStartEvent,
    LLMCompletionEndEvent,
    LLMCompletionInProgressEvent,
    LLMCompletionStartEvent,
    LLMPredictEndEvent,
    LLMPredictStartEvent,
)
from llama_index.core.instrumentation.events.query import QueryEndEvent, QueryStartEvent
from llama_index.core.instrumentation.events.retrieval import RetrievalEndEvent
from llama_index.core.instrumentation.span import active_span_id

from ..client import GreenflashClient
from ..core.context import IdentityDefaults
from ..core.events import (
    Step,
    UserInput,
    now,
)
from ..core.targets import AnswerRef
from ..kit import warn_once
from .convert import (
    _blocks_text,
    _is_agent,
    _is_chat_engine,
    _method,
    _mro_names,
)
from .events import EventHandlers
from .record import Recording
from .state import (
    _BUILD_IDLE,
    _CHAT_ENGINE_METHODS,
    _PENDING_TTL,
    _SWEEP_EVERY,
    _answers,
    _is_ancestor,
    _Query,
    _Span,
    _spans_max,
)


class Engine:
    """Span tree, root lifetimes and event routing for one instrumentor; what is recorded
    and the state it needs are ``rec``'s, the per-event handlers ``events``'."""

    def __init__(
        self, defaults: IdentityDefaults, client: GreenflashClient | None, capture_steps: bool
    ) -> None:
        self.rec = Recording(defaults, client, capture_steps)
        self.events = EventHandlers(self.rec)

    @property
    def active(self) -> bool:
        """False once the instrumentor detached: nothing more is recorded."""
        return self.rec.active

    @active.setter
    def active(self, value: bool) -> None:
        self.rec.active = value

    def span_enter(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any,
        parent_id: str | None,
        tags: Mapping[str, Any] | None,
    ) -> None:
        with self.rec.lock:
            parent = self.rec.lookup(parent_id)
            if parent is None:
                root = self.rec.new_root(id_, tags)
            else:
                root = parent.root
                root.holders += 1
            span = _Span(id_, parent, root)
            # the cap is read per span: assigning the package's _SPANS_MAX tunes it
            self.rec.spans.cap = cap = _spans_max()
            if len(self.rec.spans) >= cap:
                warn_once(
                    ("llamaindex", "span cap"),
                    "gf_integrations: over %d LlamaIndex spans open; the oldest are forgotten",
                    cap,
                )
            # past the cap the registry forgets the oldest (each releases its root)
            self.rec.spans.put(id_, span)
            if parent is None:
                root.span = span
            cls, meth = _method(id_)
            span.name = meth
            span.cls = type(instance).__name__ if instance is not None else cls
            if meth == "run" and parent is None and _is_agent(instance):
                root.agent = True
                root.react = "ReActAgent" in _mro_names(instance)
                self.events.turn_starts(root)
            elif meth == "init_run" and root.react:
                # ReAct prompts carry the user's words among "Observation:" user turns,
                # so the turn's input comes from the workflow's start event instead
                user_msg = getattr(bound_args.arguments.get("ev"), "user_msg", None)
                text = user_msg if isinstance(user_msg, str) else _blocks_text(user_msg)[0]
                if text:
                    self.rec.record(root, UserInput(root.conv, id_, text))
            elif meth in _CHAT_ENGINE_METHODS and parent is None and _is_chat_engine(instance):
                root.chat_engine = True
                self.events.turn_starts(root)
                message = bound_args.arguments.get("message")
                if isinstance(message, str):
                    self.rec.record(root, UserInput(root.conv, id_, message))
                    # like a query: the last LLM call is the answer (condense steps are not)
                    root.query = _Query(id_, message)
                    root.holders += 1
            elif meth in _CHAT_ENGINE_METHODS and hasattr(instance, "messages_to_prompt"):
                span.chat_messages = bound_args.arguments.get("messages")
            elif meth == "call_tool":
                ev = bound_args.arguments.get("ev")
                if ev is not None and hasattr(ev, "tool_name"):
                    span.tool = ev
                    span.started = now()
                    self.rec.tool_started(span)
            elif meth in ("call", "acall") and hasattr(
                getattr(instance, "metadata", None), "fn_schema"
            ):
                inside_call_tool = False
                p = parent
                while p is not None:
                    if p.tool is not None:
                        inside_call_tool = True
                        break
                    p = p.parent
                if not inside_call_tool and span.llm is None:
                    span.tool = instance
                    span.tool_input = dict(bound_args.arguments.get("kwargs") or {}) or (
                        bound_args.arguments.get("args") or None
                    )
                    span.started = now()
                    self.rec.tool_started(span)
            if self.rec.capture_steps and tags and "llamaindex.step.input_event" in tags:
                span.step = True
                self.rec.record(
                    root,
                    Step(
                        root.conv,
                        id_,
                        meth or cls,
                        "start",
                        kind="chain",
                        data={"input": tags.get("llamaindex.step.input_summary")},
                        parent_key=None,
                    ),
                )
            now_m = time.monotonic()
            root.touched = now_m
            if now_m - self.rec.last_sweep > _SWEEP_EVERY:
                self.rec.last_sweep = now_m
                self._sweep(now_m)

    def span_exit(self, id_: str, result: Any) -> None:
        with self.rec.lock:
            span = self.rec.spans.pop(id_)
            if span is None:
                return
            self.rec.remember(span)
            root = span.root
            if span.tool is not None:
                self.rec.tool_done(span, result, None)
            if span.step:
                self.rec.record(root, Step(root.conv, id_, span.name, "end", kind="chain"))
            llm = span.llm
            if llm is not None and llm.owner == id_:
                llm.exited = True
                self.rec.maybe_finish(llm)
            if root.react:
                if span.name == "run_agent_step":
                    self.rec.react_step(root, id_, result)
                elif span is root.span:
                    self.rec.react_final(root, result)
            q = root.query
            if q is not None and q.span_id == id_ and not q.ended:
                # QueryEndEvent did not come (custom engine): close the turn with the result
                self.rec.query_end(root, q, result)
            if span is root.span and result is not None:
                # the Response / agent result the caller gets: gf.rate(result) rates it
                # (a workflow's StopEvent: the caller gets its .result, e.g. AgentOutput)
                ref = AnswerRef(root.conv, root.answer)
                _answers.put(result, ref)
                inner = getattr(result, "result", None)
                if inner is not None:
                    _answers.put(inner, ref)
            self.rec.release(root)

    def span_drop(self, id_: str, err: BaseException | None) -> None:
        with self.rec.lock:
            span = self.rec.spans.pop(id_)
            if span is None:
                return
            self.rec.remember(span)
            root = span.root
            if span.tool is not None:
                self.rec.tool_done(span, None, err or "error")
            if span.step:
                self.rec.record(
                    root, Step(root.conv, id_, span.name, "error", kind="chain", data=err)
                )
            llm = span.llm
            if llm is not None and not llm.finished:
                if llm.owner == id_:
                    llm.exited = True
                    llm.error = err or "error"
                    llm.unended_starts = 0
                    self.rec.maybe_finish(llm)
                elif llm.unended_starts > 0 and err is not None and llm.error is None:
                    llm.error = err
            q = root.query
            if q is not None and q.span_id == id_ and not q.ended:
                q.ended = True
                self.rec.emit_answer(root, q, None)  # an LLM error inside it, if any
            self.rec.release(root)

    def handle(self, event: Any) -> None:
        name = _DISPATCH.get(type(event))
        if name is None:
            return
        fn = getattr(self.events, name)
        with self.rec.lock:
            span = self.rec.lookup(event.span_id)
            if span is None:
                llm = self.rec.pending.get(event.span_id or "")
                if llm is None:
                    return
                fn(event, None, llm)
                return
            fn(event, span, span.llm)

    def _sweep(self, now_m: float) -> None:
        """Close out abandoned streams, expire late-child links, send idle build summaries."""
        # streams nobody finished or closed (the registry's sweep closes each one out)
        self.rec.pending.sweep(now=now_m)
        for qtext, (t, root, q) in list(self.rec.answers_by_query_text.items()):
            if now_m - t > _PENDING_TTL:
                self.rec.answers_by_query_text.pop(qtext, None)
                self.rec.emit_answer(root, q, None)
        for key, b in list(self.rec.builds.items()):
            if now_m - b.touched > _BUILD_IDLE:
                self.rec.flush_build(key)
        # spans never closed, idle for the TTL (the registry's sweep; it releases their roots)
        self.rec.spans.sweep(now=now_m)
        for rid, root in list(self.rec.roots.items()):
            if now_m - root.touched > _PENDING_TTL and now_m - root.started > _PENDING_TTL:
                if not any(s.root is root for s in self.rec.spans.values()):
                    self.rec.roots.pop(rid, None)

    def flush_pending(self) -> None:
        with self.rec.lock:
            self.rec.flush_build()

    def close_out(self) -> None:
        """At exit: send everything held back (build summaries, streams, answers) now."""
        # bounded: a thread stuck inside a handler must not hold up the exit
        if not self.rec.lock.acquire(timeout=1.0):
            return
        try:
            self._sweep(float("inf"))
        finally:
            self.rec.lock.release()

    def capture_active(self) -> bool:
        """True when the current context is inside an LLM call we record (or its stream)."""
        if not self.rec.active:
            return False
        sid = active_span_id.get()
        with self.rec.lock:
            if sid is None:
                # a top-level stream consumed by the caller's own thread, outside any span
                me = threading.get_ident()
                return any(
                    llm.thread == me
                    and (o := self.rec.lookup(llm.owner)) is not None
                    and o.parent is None
                    for llm in self.rec.pending.values()
                )
            span = self.rec.lookup(sid)
            depth = 0
            while span is not None and depth < 64:
                if span.llm is not None and not span.llm.finished:
                    return True
                span = span.parent
                depth += 1
            # a stream consumed by the span that started it (agent step, chat engine)
            for llm in self.rec.pending.values():
                owner = self.rec.lookup(llm.owner)
                p = owner.parent if owner is not None else None
                if p is not None and _is_ancestor(p.id, self.rec.lookup(sid)):
                    return True
        return False

    def state_sizes(self) -> dict[str, int]:
        """Sizes of the internal maps (for tests and the memory benchmark)."""
        with self.rec.lock:
            return {
                "spans": len(self.rec.spans),
                "roots": len(self.rec.roots),
                "pending": len(self.rec.pending),
                "awaiting": len(self.rec.answers_by_query_text),
                "builds": len(self.rec.builds),
                "recent": len(self.rec.recent),
            }


# Event class -> the EventHandlers method that handles it. Keyed by the exact class (a subclass
# such as SparseEmbeddingStartEvent is another event, not handled); the value is a method
# name, looked up on the engine per event.
_DISPATCH: dict[type[BaseEvent], str] = {
    LLMChatStartEvent: "on_chat_start",
    LLMChatInProgressEvent: "on_chat_progress",
    LLMChatEndEvent: "on_chat_end",
    LLMCompletionStartEvent: "on_completion_start",
    LLMCompletionInProgressEvent: "on_completion_progress",
    LLMCompletionEndEvent: "on_completion_end",
    LLMPredictStartEvent: "on_predict_start",
    LLMPredictEndEvent: "on_predict_end",
    ExceptionEvent: "on_exception",
    QueryStartEvent: "on_query_start",
    QueryEndEvent: "on_query_end",
    RetrievalEndEvent: "on_retrieval_end",
    EmbeddingStartEvent: "on_embedding_start",
    EmbeddingEndEvent: "on_embedding_end",
}

"""Handlers for LlamaIndex instrumentation events, one per event type."""

from __future__ import annotations

from typing import Any

from ..core.events import (
    Embedding,
    Retrieval,
    UserInput,
    now,
)
from .convert import (
    _documents,
    _model_name,
    _query_text,
)
from .record import Recording
from .state import (
    _LLM,
    _chat_messages_above,
    _inside_retrieval,
    _Query,
    _Root,
    _Span,
)


class EventHandlers:
    """One handler per LlamaIndex instrumentation event type, recording through ``rec``."""

    def __init__(self, rec: Recording) -> None:
        self.rec = rec

    def _owner(self, span: _Span) -> _LLM:
        """The LLM call an LLM start event belongs to (creating it for an outer span).

        An LLM span inside another one (chat -> complete for completion-only models,
        predict -> chat) feeds the outer call. So does a second call starting in the same
        root while a stream is still open: ``astream_chat`` of a chat engine re-enters
        ``stream_chat`` from the consumer's span, outside the first span's subtree.
        """
        if span.llm is not None:
            return span.llm
        root = span.root
        active = root.llm_active
        if active is not None and not active.finished:
            span.llm = active
            return active
        llm = _LLM(span.id, root, None)
        p: _Span | None = span
        while p is not None:
            if p.tool is not None:
                llm.silent = True  # inside a tool: its result is the observation
                break
            p = p.parent
        span.llm = llm
        root.llm_active = llm
        root.holders += 1
        self.turn_starts(root)
        return llm

    def turn_starts(self, root: _Root) -> None:
        if self.rec.builds:
            self.rec.flush_build(root.conv.key)

    def on_chat_start(self, ev: Any, span: _Span | None, llm: _LLM | None) -> None:
        if span is None:
            return
        llm = self._owner(span)
        llm.unended_starts += 1
        if not llm.kind:
            llm.kind = "chat"
        if llm.messages is None:
            llm.messages = list(ev.messages or ())
        if llm.model_dict is None:
            llm.model_dict = ev.model_dict

    def on_chat_progress(self, ev: Any, span: _Span | None, llm: _LLM | None) -> None:
        if llm is not None:
            llm.prior, llm.reply = llm.reply, ev.response

    def on_chat_end(self, ev: Any, span: _Span | None, llm: _LLM | None) -> None:
        if llm is None or llm.finished:
            return
        llm.unended_starts -= 1
        if ev.response is not None:
            llm.response = ev.response
        if llm.messages is None:
            llm.messages = list(ev.messages or ())
        self.rec.maybe_finish(llm)

    def on_completion_start(self, ev: Any, span: _Span | None, llm: _LLM | None) -> None:
        if span is None:
            return
        llm = self._owner(span)
        llm.unended_starts += 1
        if not llm.kind:
            llm.kind = "completion"
            llm.prompt = ev.prompt
            llm.messages = _chat_messages_above(span)
        if llm.model_dict is None:
            llm.model_dict = ev.model_dict

    def on_completion_progress(self, ev: Any, span: _Span | None, llm: _LLM | None) -> None:
        if llm is not None and llm.kind != "chat":
            llm.prior, llm.reply = llm.reply, ev.response

    def on_completion_end(self, ev: Any, span: _Span | None, llm: _LLM | None) -> None:
        if llm is None or llm.finished:
            return
        llm.unended_starts -= 1
        if llm.kind != "chat" and ev.response is not None:
            llm.response = ev.response
        self.rec.maybe_finish(llm)

    def on_predict_start(self, ev: Any, span: _Span | None, llm: _LLM | None) -> None:
        if span is None:
            return
        llm = self._owner(span)
        if not llm.kind:
            llm.kind = "predict"
            llm.template = ev.template
            llm.template_args = dict(ev.template_args or {})
            self.rec.adopt_stream(llm)

    def on_predict_end(self, ev: Any, span: _Span | None, llm: _LLM | None) -> None:
        if llm is not None and isinstance(ev.output, str):
            llm.output = ev.output

    def on_exception(self, ev: Any, span: _Span | None, llm: _LLM | None) -> None:
        if llm is None or llm.finished:
            return
        llm.error = ev.exception
        llm.partial = True
        if span is None or span.id == llm.owner:
            # the outer stream was closed or failed: the call is over
            llm.unended_starts = 0
        else:
            llm.unended_starts = max(0, llm.unended_starts - 1)
        if llm.unended_starts == 0:
            llm.exited = True
            self.rec.maybe_finish(llm)

    def on_query_start(self, ev: Any, span: _Span | None, llm: _LLM | None) -> None:
        if span is None or llm is not None:
            return
        root = span.root
        if root.query is not None or root.agent:
            return  # a nested query (sub-question, query tool): part of the outer turn
        q = _Query(span.id, _query_text(ev.query))
        root.query = q
        root.holders += 1
        if not root.chat_engine:
            self.rec.record(root, UserInput(root.conv, span.id, q.text))

    def on_query_end(self, ev: Any, span: _Span | None, llm: _LLM | None) -> None:
        if span is None:
            return
        q = span.root.query
        if q is not None and q.span_id == span.id and not q.ended:
            self.rec.query_end(span.root, q, ev.response)

    def on_retrieval_end(self, ev: Any, span: _Span | None, llm: _LLM | None) -> None:
        if span is None or llm is not None:
            return
        root = span.root
        nodes = list(ev.nodes or ())
        self.rec.record(
            root,
            Retrieval(
                root.conv,
                span.id,
                _query_text(ev.str_or_query_bundle),
                documents=lambda: _documents(nodes),
                retriever=span.cls or None,
            ),
        )

    def on_embedding_start(self, ev: Any, span: _Span | None, llm: _LLM | None) -> None:
        if span is not None:
            span.tool_input = ev.model_dict  # model for the end event
            span.started = now()

    def on_embedding_end(self, ev: Any, span: _Span | None, llm: _LLM | None) -> None:
        if span is None:
            return
        root = span.root
        chunks = ev.chunks or ()
        vectors = ev.embeddings or ()  # only the first vector's length is read
        dims = len(vectors[0]) if vectors and hasattr(vectors[0], "__len__") else None
        model = _model_name(span.tool_input)
        if _inside_retrieval(span):
            return  # the query vector of a search: its retrieval message tells the story
        if root.query is not None or root.agent or root.chat_engine:
            self.rec.record(
                root,
                Embedding(
                    root.conv,
                    span.id,
                    model=model,
                    count=len(chunks),
                    dimensions=dims,
                    started_at=span.started,
                ),
            )
            return
        self.rec.add_build(root, len(chunks), dims, model)

    # ---- LLM calls ------------------------------------------------------------------------

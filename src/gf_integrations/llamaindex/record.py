"""The LlamaIndex engine's state and the events it records."""

from __future__ import annotations

import collections
import functools
import threading
import time
from collections.abc import Mapping
from typing import Any

# llama-index-core 0.12 defines it here; later releases re-export it from
# llama-index-instrumentation without marking it as exported
from llama_index.core.instrumentation.dispatcher import (  # type: ignore[attr-defined]
    active_instrument_tags,
)

from ..client import GreenflashClient, get_client
from ..core.context import (
    IdentityDefaults,
    current_scope,
)
from ..core.events import (
    ChatMessage,
    Embedding,
    Event,
    FinalAnswer,
    LLMCall,
    ToolCallSpec,
    ToolResult,
    UserInput,
)
from ..kit import RunRegistry
from .convert import (
    _agent_answer,
    _blocks_text,
    _content,
    _convert_messages,
    _field,
    _model_name,
    _raw_model,
    _react_thought,
    _tag,
    _to_neutral,
    _usage_of,
)
from .prompts import _template_prompt
from .state import (
    _AWAIT_MAX,
    _LLM,
    _PENDING_TTL,
    _RECENT_MAX,
    _SPAN_TTL,
    _SWEEP_EVERY,
    TAG_CONVERSATION,
    TAG_ORGANIZATION,
    TAG_USER,
    _Build,
    _llm_touched,
    _Query,
    _Root,
    _root_touched,
    _Span,
    _spans_max,
)


class Recording:
    """Engine state and what it records: identity, LLM calls, answers, agent steps, builds."""

    def __init__(
        self,
        defaults: IdentityDefaults,
        client: GreenflashClient | None,
        capture_steps: bool,
    ) -> None:
        self.defaults = defaults
        self.client = client
        self.capture_steps = capture_steps
        self.lock = threading.RLock()
        # open spans, bounded in count (the package's _SPANS_MAX, oldest forgotten first)
        # and age (_SPAN_TTL since their root's last activity) by the kit's registry
        self.spans: RunRegistry[str, _Span] = RunRegistry(
            cap=_spans_max(),
            ttl=_SPAN_TTL,
            stamp=_root_touched,
            sweep_every=_SWEEP_EVERY,
            on_drop=self._forget_span,
        )
        # exited spans, so that late children (lazy generators) still find their root;
        # bounded by count, oldest first out
        self.recent: collections.OrderedDict[str, _Span] = collections.OrderedDict()
        self.roots: dict[str, _Root] = {}
        # LLM calls whose span exited before their end event (streams), by owner span id;
        # one idle for _PENDING_TTL is closed out as abandoned, as is the oldest past the cap
        self.pending: RunRegistry[str, _LLM] = RunRegistry(
            cap=_spans_max(),
            ttl=_PENDING_TTL,
            stamp=_llm_touched,
            sweep_every=_SWEEP_EVERY,
            on_drop=self._abandon_stream,
        )
        # queries that ended with an answer stream not read yet, keyed by the query's text:
        # the predict call that streams the answer later finds its query by the
        # ``query_str`` of its template (see _adopt_stream); value: (monotonic, root, query)
        self.answers_by_query_text: collections.OrderedDict[str, tuple[float, _Root, _Query]] = (
            collections.OrderedDict()
        )
        self.builds: dict[str, _Build] = {}
        self.last_sweep = time.monotonic()
        self.active = True

    # ---- identity -----------------------------------------------------------------------

    def new_root(self, span_id: str, tags: Mapping[str, Any] | None) -> _Root:
        client = self.client or get_client()
        scope = current_scope()
        if not tags:
            tags = active_instrument_tags.get()
        d = self.defaults
        tag_conv = _tag(tags, TAG_CONVERSATION)
        # the instrumentor's keywords rank below the scope and the tags: they go in as
        # native values, not as the explicit defaults that would win over the scope
        conv = client.resolve(
            native_conversation_id=tag_conv or d.external_conversation_id,
            native_user_id=_tag(tags, TAG_USER) or d.external_user_id,
            native_organization_id=_tag(tags, TAG_ORGANIZATION) or d.external_organization_id,
            product_id=d.product_id,
            extra_properties=d.properties,
        )
        explicit = bool(
            (scope is not None and scope.external_conversation_id)
            or tag_conv
            or d.external_conversation_id
        )
        root = _Root(span_id, client, conv, explicit)
        self.roots[span_id] = root
        return root

    def lookup(self, span_id: str | None) -> _Span | None:
        if span_id is None:
            return None
        span = self.spans.get(span_id)
        if span is None:
            span = self.recent.get(span_id)
        return span

    def _forget_span(self, span_id: str, span: _Span) -> None:
        """A span the registry dropped (over the cap, or idle): it no longer holds its root."""
        if span.tool is not None:
            span.tool = None  # no result will come: the siblings after it are not held up
            if span.parent is not None:
                self._send_tool_results(span.parent)
        self.release(span.root)

    def _abandon_stream(self, owner: str, llm: _LLM) -> None:
        """A stream the registry dropped (idle for the TTL, or over the cap): close it out."""
        llm.partial = True
        llm.error = llm.error or "stream abandoned"
        llm.unended_starts = 0
        self.maybe_finish(llm)

    def release(self, root: _Root) -> None:
        root.holders -= 1
        if root.holders <= 0:
            self.roots.pop(root.id, None)

    # ---- spans --------------------------------------------------------------------------

    def remember(self, span: _Span) -> None:
        self.recent[span.id] = span
        if len(self.recent) > _RECENT_MAX:
            self.recent.popitem(last=False)

    # ---- events -------------------------------------------------------------------------

    def maybe_finish(self, llm: _LLM) -> None:
        if llm.finished:
            return
        if not llm.exited or llm.unended_starts > 0:
            if llm.exited and llm.owner not in self.pending:
                self.pending.put(llm.owner, llm)  # a stream: wait for its end event
            return
        llm.finished = True
        self.pending.pop(llm.owner)
        root = llm.root
        if root.llm_active is llm:
            root.llm_active = None
        try:
            q = root.query
            if llm.silent:
                pass
            elif root.react:
                root.react_llm = llm  # mapped from the agent step's parsed output
            elif q is not None and not q.ended:
                q.last = llm
                q.llm_calls += 1
            elif q is not None and q.ended and q.last is None:
                q.last = llm
                self.emit_answer(root, q, None)
            else:
                self._emit_llm(root, llm)
                llm.drop_payload()
        finally:
            self.release(root)

    def _model(self, llm: _LLM) -> str | None:
        # the model that answered (the provider's response names the resolved snapshot,
        # e.g. gpt-4o-mini-2024-07-18) wins over the configured alias, as in the other
        # integrations
        name = _raw_model(llm.response) or _model_name(llm.model_dict)
        return name or (type(llm.instance).__name__ if llm.instance is not None else None)

    def _reply(self, llm: _LLM, native_id: str | None) -> tuple[Any, Any]:
        """(reply Lazy, text) for an LLM call."""
        resp = llm.response if llm.response is not None else llm.reply
        if llm.kind == "chat" or (llm.kind == "predict" and hasattr(resp, "message")):
            message = getattr(resp, "message", None)
            if message is None:
                return None, None

            def conv_chat() -> ChatMessage:
                m = _to_neutral(message)
                if native_id:
                    m["id"] = native_id
                return m

            return conv_chat, None
        text = llm.output
        if text is None and resp is not None:
            text = getattr(resp, "text", None)
        if text is None:
            return None, None
        reply: ChatMessage = {"role": "assistant", "content": str(text)}
        if native_id:
            reply["id"] = native_id
        return reply, text

    def _emit_llm(self, root: _Root, llm: _LLM) -> None:
        resp = llm.response
        inputs_are_user = True
        prompt = None
        if llm.template is not None:
            prompt = _template_prompt(llm.template, llm.template_args)
            args = llm.template_args or {}
            kwargs = getattr(llm.template, "kwargs", None) or {}
            query = args.get("query_str") or kwargs.get("query_str")
            inputs_are_user = False
            if isinstance(query, str) and not root.chat_engine and not root.agent:
                self.record(root, UserInput(root.conv, llm.owner, query))
        if root.chat_engine:
            inputs_are_user = False
        messages: Any = ()
        if llm.kind in ("chat", "completion") and llm.messages is not None:
            msgs = llm.messages
            messages = lambda: _convert_messages(msgs)  # noqa: E731
        elif llm.kind == "completion" and llm.prompt is not None:
            messages = ({"role": "user", "content": llm.prompt},)
        native = None if inputs_are_user else llm.owner
        reply, _ = self._reply(llm, native)
        self.record(
            root,
            LLMCall(
                root.conv,
                llm.owner,
                messages=messages,
                reply=reply,
                model=_field("the model", functools.partial(self._model, llm), None),
                usage=_field("usage", functools.partial(_usage_of, resp), None),
                usage_kind="llamaindex",
                finish_reason=_field("the finish reason", llm.finish_reason, None),
                started_at=llm.started_at,
                error=llm.error,
                partial=llm.partial and reply is not None,
                system_prompt=prompt,
                record_inputs=inputs_are_user,
            ),
        )

    # ---- query engines --------------------------------------------------------------------

    def query_end(self, root: _Root, q: _Query, response: Any) -> None:
        q.ended = True
        # by type name: reading ``response_gen`` (a property on chat responses) is avoided,
        # a streaming response is never touched
        streaming = "Streaming" in type(response).__name__
        text = None if streaming else getattr(response, "response", None)
        if streaming and q.last is not None and q.last.reply is None:
            # a call that ended before the stream began and did not stream (a chat engine's
            # condense step) is not the answer: the answer is the stream, still to come.
            # (The stream itself may already be done: chat engines drain it on a thread.)
            q.last.drop_payload()
            q.last = None
        if streaming and q.last is None:
            # the answer is generated lazily when the caller consumes the stream: a chat
            # engine does it under its own root; a query engine often in a new root span,
            # so wait for an LLM call predicting this query (see _adopt_stream)
            if not root.chat_engine:
                self.answers_by_query_text[q.text] = (time.monotonic(), root, q)
                if len(self.answers_by_query_text) > _AWAIT_MAX:
                    self.answers_by_query_text.popitem(last=False)
            root.query = q
            return
        self.emit_answer(root, q, text)

    def emit_answer(self, root: _Root, q: _Query, text: Any) -> None:
        llm = q.last
        if root.query is q:
            root.query = None
            self.release(root)
        awaiting = self.answers_by_query_text.get(q.text)
        if awaiting is not None and awaiting[2] is q:
            # the stream was created inside the query (llama-index-core 0.12) and ended
            # under it: no later call will come to adopt this answer
            del self.answers_by_query_text[q.text]
        if llm is None:
            if text is not None:
                self.record(root, FinalAnswer(root.conv, q.key, str(text)))
            return
        reply: Any
        if text is not None:
            reply = {"role": "assistant", "content": str(text), "id": q.key}
        else:
            reply, _ = self._reply(llm, q.key)
        prompt = (
            _template_prompt(llm.template, llm.template_args) if llm.template is not None else None
        )
        props = {"llmCalls": q.llm_calls} if q.llm_calls > 1 else None
        messages: Any = ()
        if prompt is None and llm.kind == "chat" and llm.messages is not None:
            msgs = llm.messages  # for the system prompt only (record_inputs=False)
            messages = lambda: _convert_messages(msgs)  # noqa: E731
        self.record(
            root,
            LLMCall(
                root.conv,
                q.key,
                messages=messages,
                reply=reply,
                model=_field("the model", functools.partial(self._model, llm), None),
                usage=_field("usage", functools.partial(_usage_of, llm.response), None),
                usage_kind="llamaindex",
                finish_reason=_field("the finish reason", llm.finish_reason, None),
                started_at=llm.started_at,
                error=llm.error,
                partial=llm.partial and reply is not None,
                system_prompt=prompt,
                final=not root.chat_engine,
                record_inputs=False,
                properties=props,
            ),
        )
        q.last = None
        llm.drop_payload()

    def adopt_stream(self, llm: _LLM) -> None:
        """A predict call of a streaming query's answer, started after the query ended."""
        if not self.answers_by_query_text:
            return
        args = llm.template_args or {}
        kwargs = getattr(llm.template, "kwargs", None) or {}
        query = kwargs.get("query_str") or args.get("query_str")
        if not isinstance(query, str):
            return
        hit = self.answers_by_query_text.pop(query, None)
        if hit is None:
            return
        _, qroot, q = hit
        # move this call under the query's root: its conversation and its turn
        old = llm.root
        old.holders -= 1
        if old.holders <= 0:
            self.roots.pop(old.id, None)
        qroot.holders += 1
        llm.root = qroot
        q.ended = True

    # ---- ReAct agents ---------------------------------------------------------------------------

    def _react_llm_call(self, root: _Root, key: str, reply: ChatMessage, final: bool) -> None:
        llm, root.react_llm = root.react_llm, None
        msgs = llm.messages if llm is not None and llm.messages is not None else []
        resp = llm.response if llm is not None else None
        self.record(
            root,
            LLMCall(
                root.conv,
                key,
                # inputs only for the system prompt: the rest is ReAct scaffolding
                messages=lambda: [m for m in _convert_messages(msgs) if m.get("role") == "system"],
                reply=reply,
                model=self._model(llm) if llm is not None else None,
                usage=_field("usage", functools.partial(_usage_of, resp), None),
                usage_kind="llamaindex",
                started_at=llm.started_at if llm is not None else None,
                record_inputs=False,
                final=final,
            ),
        )
        if llm is not None:
            llm.drop_payload()

    def react_step(self, root: _Root, key: str, output: Any) -> None:
        """``run_agent_step`` of a ReActAgent ended: its parsed tool calls become tool_calls."""
        response = getattr(output, "response", None)
        text = _blocks_text(response)[0] if response is not None else None
        calls = getattr(output, "tool_calls", None) or []
        if not calls:
            root.react_text = text
            return
        specs: list[ToolCallSpec] = [
            {
                "id": getattr(c, "tool_id", None),
                "name": str(getattr(c, "tool_name", "") or "unknown_tool"),
                "arguments": getattr(c, "tool_kwargs", None),
            }
            for c in calls
        ]
        reply: ChatMessage = {
            "role": "assistant",
            "content": _react_thought(text),
            "tool_calls": specs,
            "id": key,
        }
        self._react_llm_call(root, key, reply, final=False)

    def react_final(self, root: _Root, result: Any) -> None:
        raw = root.react_text
        if raw is None and root.react_llm is None:
            return
        answer = _agent_answer(result)
        if answer is None and raw is not None:
            answer = raw.split("Answer:", 1)[-1].strip()
        reply: ChatMessage = {"role": "assistant", "content": answer or "", "id": root.id}
        thought = _react_thought(raw)
        if thought:
            reply["reasoning"] = thought
        self._react_llm_call(root, root.id, reply, final=True)

    # ---- tools ------------------------------------------------------------------------------

    def tool_done(self, span: _Span, result: Any, error: BaseException | str | None) -> None:
        root = span.root
        tool = span.tool
        span.tool = None
        if hasattr(tool, "tool_name"):  # workflow ToolCall event of call_tool
            name = str(tool.tool_name)
            call_id = getattr(tool, "tool_id", None) or None
            args = getattr(tool, "tool_kwargs", None)
        else:
            meta = getattr(tool, "metadata", None)
            name = str(getattr(meta, "name", None) or type(tool).__name__)
            call_id = None
            args = span.tool_input
        output: Any = None
        if result is not None:
            out = getattr(result, "tool_output", result)  # ToolCallResult -> ToolOutput
            if getattr(out, "is_error", False):
                exc = getattr(out, "exception", None)
                error = exc if isinstance(exc, BaseException) else str(_content(out))
            else:
                output = _content(out)
        event = ToolResult(
            root.conv,
            span.id,
            name,
            call_id,
            input=args,
            output=output,
            error=error,
            started_at=span.started,
        )
        parent = span.parent
        if parent is None or not parent.tools_open:
            self.record(root, event)
            return
        span.held = event
        self._send_tool_results(parent)

    def tool_started(self, span: _Span) -> None:
        """A tool span opened: its result is sent in this order among its siblings."""
        parent = span.parent
        if parent is not None:
            if parent.tools_open is None:
                parent.tools_open = collections.deque()
            parent.tools_open.append(span)

    def _send_tool_results(self, parent: _Span) -> None:
        """Record the results of ``parent``'s tool calls that are done, in their start order.

        An agent runs a step's tool calls concurrently and they finish in any order; the
        results follow the order of the calls (the model's), whatever the timing.
        """
        waiting = parent.tools_open
        while waiting and waiting[0].tool is None:  # done (or forgotten)
            done = waiting.popleft()
            event, done.held = done.held, None
            if event is not None:
                self.record(done.root, event)

    # ---- embeddings outside turns -----------------------------------------------------------

    def add_build(self, root: _Root, count: int, dims: int | None, model: str | None) -> None:
        if not root.explicit:
            return  # outside any conversation: an index build is not a conversation
        b = self.builds.get(root.conv.key)
        if b is None:
            b = self.builds[root.conv.key] = _Build(root.conv, root.client)
        b.count += count
        b.dims = b.dims or dims
        b.model = b.model or model
        b.touched = time.monotonic()

    def flush_build(self, key: str | None = None) -> None:
        keys = [key] if key is not None else list(self.builds)
        for k in keys:
            b = self.builds.pop(k, None) if k is not None else None
            if b is None:
                continue
            b.client.record(
                Embedding(
                    b.conv,
                    b.key,
                    model=b.model,
                    count=b.count,
                    dimensions=b.dims,
                    started_at=b.first,
                    properties={"summary": "index build"},
                )
            )

    # ---- housekeeping -----------------------------------------------------------------------

    def record(self, root: _Root, event: Event) -> None:
        root.touched = time.monotonic()
        if isinstance(event, (LLMCall, FinalAnswer)):
            root.answer = event.key
        root.client.record(event)

"""The recorder: turns neutral events into Greenflash wire messages.

One event at a time, under the uploader's mapping lock (on its worker thread, or on a host
thread assisting it: docs/DESIGN.md section 3), so its per-conversation state needs no lock
of its own. Output dicts are already in wire form (camelCase, JSON-safe, masked, truncated);
the schema tests check that every shape it produces validates against
:mod:`gf_integrations.schema`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Sequence
from typing import Any

from ..schema import MessageItem
from .context import Conv
from .conversations import Conversations, ConvState, Outgoing, batch_key
from .events import (
    ChatMessage,
    Document,
    Embedding,
    Event,
    FinalAnswer,
    Lazy,
    LLMCall,
    RawMessage,
    Retrieval,
    SetSystemPrompt,
    Step,
    SystemPrompt,
    ToolResult,
    UserInput,
    resolve,
)
from .ids import content_digest, sample_fraction, stable_id
from .masking import MaskFn, apply_mask
from .pricing import Pricing
from .safejson import Limits, as_object, to_jsonable, tool_arguments, truncate_text
from .system_prompts import SystemPrompts
from .usage import as_dict, normalize
from .wireform import error_info, iso_utc, wire_text

_CONTEXT_SEPARATOR = "\n\n"

__all__ = ["Mapper", "Outgoing", "batch_key"]


def _usage(
    usage: Lazy[Any], kind: str | None, limits: Limits, keep_provider: bool
) -> tuple[dict[str, int] | None, Any]:
    """Token usage in the one vocabulary (core/usage.py) and the provider's own, as wire
    data; (None, None) when there is none. A usage that fails to read is left out."""
    try:
        data = as_dict(resolve(usage))
    except Exception:  # a provider object that surprises us loses the usage, not the event
        return None, None
    if not data:
        return None, None
    counts = normalize(kind, data) or None
    provider = to_jsonable(data, limits) if keep_provider and kind != "greenflash" else None
    return counts, provider


class Mapper:
    """Stateful event-to-message mapping, one per client, used by one thread at a time."""

    def __init__(
        self,
        *,
        limits: Limits,
        mask: MaskFn | None = None,
        sample_rate: float = 1.0,
        keep_provider_usage: bool = True,
        estimate_cost: bool = True,
    ) -> None:
        self.limits = limits
        self.keep_provider_usage = keep_provider_usage
        # costUsd from the usage when genai-prices is installed (core/pricing.py)
        self.pricing = Pricing(estimate_cost)
        self.mask = mask
        self.sample_rate = sample_rate
        self.sampled_out = 0
        self.conversations = Conversations()
        self.prompts = SystemPrompts(limits, mask)

    # -- public ------------------------------------------------------------------------

    def keep(self, conv: Conv) -> bool:
        """Deterministic client-side sampling by conversation key."""
        if conv.force_sample or self.sample_rate >= 1.0:
            return True
        return sample_fraction(conv.key) < self.sample_rate

    def answer_id(self, conv: Conv, key: str) -> str | None:
        """The ``externalMessageId`` of the answer the event ``key`` produced, if mapped."""
        return self.conversations.answer_id(conv, key)

    def recorded_conv(self, conv: Conv) -> Conv:
        """The identity ``conv``'s conversation was last mapped with, else ``conv``."""
        return self.conversations.recorded_conv(conv)

    def masked(self, value: Any) -> Any:
        """``value`` through the mask hook (unchanged without one)."""
        return value if self.mask is None else apply_mask(self.mask, value)

    def map(self, event: Event) -> list[Outgoing]:
        """Map one event to zero or more outgoing messages (parents first)."""
        if not self.keep(event.conv):
            self.sampled_out += 1
            return []
        state = self.conversations.state(event.conv.key)
        state.conv = event.conv
        out: list[Outgoing] = []
        if isinstance(event, LLMCall):
            self._llm(event, state, out)
        elif isinstance(event, ToolResult):
            self._tool_result(event, state, out)
        elif isinstance(event, Retrieval):
            self._retrieval(event, state, out)
        elif isinstance(event, UserInput):
            self._user_input(event, state, out)
        elif isinstance(event, FinalAnswer):
            self._final(event, state, out)
        elif isinstance(event, Embedding):
            self._embedding(event, state, out)
        elif isinstance(event, Step):
            self._step(event, state, out)
        elif isinstance(event, SetSystemPrompt):
            self.prompts.set(state, event.prompt)
        elif isinstance(event, RawMessage):
            self._raw(event, state, out)
        else:  # pragma: no cover - typed union
            raise TypeError(f"unknown event {type(event).__name__}")
        if out and state.pending_prompt is not None:
            out[0].system_prompt = state.pending_prompt
            state.pending_prompt = None
        return out

    def _llm(self, ev: LLMCall, state: ConvState, out: list[Outgoing]) -> None:
        conv = ev.conv
        messages: Sequence[ChatMessage] = resolve(ev.messages) or ()
        system_texts = [m.get("content") or "" for m in messages if m.get("role") == "system"]
        if ev.system_prompt is not None:
            self.prompts.set(state, ev.system_prompt)
        elif any(system_texts):
            self.prompts.set(state, SystemPrompt(content="\n\n".join(t for t in system_texts if t)))
        history = [m for m in messages if m.get("role") != "system"]
        ended = ev.ended_at
        started = ev.started_at or (ended - dt.timedelta(milliseconds=1))
        if ev.record_inputs:
            for i, msg in enumerate(history):
                at = started + dt.timedelta(microseconds=i) if i else started
                self._history_message(conv, state, msg, self._message_id(conv, msg, i), at, out)
        props = self._llm_properties(ev)
        if ev.error is not None and not ev.partial:
            info = error_info(ev.error)
            self._emit(
                out,
                state,
                conv,
                stable_id(conv.key, "llm_error", ev.key),
                ended,
                {
                    "messageType": "llm",
                    "content": f"{info['type']}: {info['message']}",
                    "model": ev.model,
                    "properties": {**props, "error": info},
                },
                parent=state.last_user,
            )
            return
        reply = resolve(ev.reply)
        if reply is None:
            return
        rid = self._message_id(conv, reply, len(history))
        self._reply(
            conv, state, reply, rid, ended, out, model=ev.model, props=props, final=ev.final
        )
        if not reply.get("tool_calls"):
            self.conversations.remember_answer(conv, ev.key, rid)

    def _llm_properties(self, ev: LLMCall) -> dict[str, Any]:
        props: dict[str, Any] = {}
        self._put_usage(props, ev.usage, ev.usage_kind, ev.model, ev.provider, ev.ended_at)
        if ev.started_at is not None:
            props["latencyMs"] = round((ev.ended_at - ev.started_at).total_seconds() * 1000, 3)
        if ev.finish_reason:
            props["finishReason"] = ev.finish_reason
        if ev.provider:
            props["provider"] = ev.provider
        if ev.partial:
            props["partial"] = True
            if ev.error is not None:
                props["error"] = error_info(ev.error)
        if ev.properties:
            props.update(to_jsonable(dict(ev.properties), self.limits))
            if props.get("stream") is True and "usage" not in props:
                # the API sent no usage for this stream (OpenAI: only when asked with
                # stream_options={"include_usage": True}); we never ask for the host
                props["usageMissing"] = True
        return props

    def _put_usage(
        self,
        props: dict[str, Any],
        usage: Lazy[Any],
        kind: str | None,
        model: str | None,
        provider: str | None,
        at: dt.datetime,
    ) -> None:
        counts, provider_usage = _usage(usage, kind, self.limits, self.keep_provider_usage)
        if counts:
            props["usage"] = counts
            cost = self.pricing.price(counts, model, provider, at)
            if cost:
                props.update(cost)
        if provider_usage:
            props["providerUsage"] = provider_usage

    def _history_message(
        self,
        conv: Conv,
        state: ConvState,
        msg: ChatMessage,
        mid: str,
        at: dt.datetime,
        out: list[Outgoing],
    ) -> None:
        role = msg.get("role")
        if role == "user":
            if state.seen(mid):
                state.last_user = mid
                return
            self._emit(
                out,
                state,
                conv,
                mid,
                at,
                {"role": "user", "content": wire_text(msg.get("content"), self.limits)},
            )
            state.last_user = mid
            state.turn_has_tools = False
            state.pending_context = ()
        elif role == "assistant":
            self._reply(conv, state, msg, mid, at, out, model=None, props={}, final=False)
        elif role == "tool":
            self._tool_message(conv, state, msg, at, out)
        # unknown roles (function, developer handled as system upstream) are skipped

    def _reply(
        self,
        conv: Conv,
        state: ConvState,
        msg: ChatMessage,
        mid: str,
        at: dt.datetime,
        out: list[Outgoing],
        *,
        model: str | None,
        props: dict[str, Any],
        final: bool | None,
    ) -> None:
        lim = self.limits
        calls = msg.get("tool_calls") or []
        text = wire_text(msg.get("content"), lim)
        reasoning = msg.get("reasoning")
        refusal = msg.get("refusal")
        parent = state.last_user
        if reasoning:
            self._emit(
                out,
                state,
                conv,
                stable_id(mid, "reasoning"),
                at,
                {
                    "messageType": "thought",
                    "content": wire_text(reasoning, lim),
                    "model": model,
                    "properties": {"kind": "reasoning"},
                },
                parent=parent,
            )
        if calls:
            state.turn_has_tools = True
            tool_props = props or None
            if text:
                self._emit(
                    out,
                    state,
                    conv,
                    mid,
                    at,
                    {
                        "messageType": "thought",
                        "content": text,
                        "model": model,
                        "properties": tool_props,
                    },
                    parent=parent,
                )
                tool_props = None
            else:
                state.mark(mid)
            for n, call in enumerate(calls):
                cid = self._tool_call_id(conv, call.get("id"), mid, n)
                self._emit(
                    out,
                    state,
                    conv,
                    cid,
                    at + dt.timedelta(microseconds=n + 1),
                    {
                        "messageType": "tool_call",
                        "toolName": str(call.get("name") or "unknown_tool"),
                        "input": tool_arguments(call.get("arguments"), lim),
                        "model": model,
                        "properties": tool_props if n == 0 else None,
                    },
                    parent=mid if text else parent,
                )
            return
        if refusal and not text:
            text = refusal
            props = {**props, "refusal": True}
        if final is None:
            final = state.turn_has_tools
        context = None
        # a resent history answer (already sent) leaves the context to the new answer
        if state.pending_context and not state.seen(mid):
            context = truncate_text(_CONTEXT_SEPARATOR.join(state.pending_context), lim.max_string)
            state.pending_context = ()
        fields: dict[str, Any] = {
            "content": text or "",
            "model": model,
            "context": context,
            "properties": props or None,
        }
        if final:
            fields["messageType"] = "final_response"
        else:
            fields["role"] = "assistant"
        self._emit(out, state, conv, mid, at, fields, parent=parent)

    def _tool_call_id(self, conv: Conv, call_id: str | None, owner: str, n: int) -> str:
        if call_id:
            return stable_id(conv.key, "tool_call", call_id)
        return stable_id(owner, "tool_call", n)

    def _tool_message(
        self, conv: Conv, state: ConvState, msg: ChatMessage, at: dt.datetime, out: list[Outgoing]
    ) -> None:
        call_id = msg.get("tool_call_id")
        content = wire_text(msg.get("content"), self.limits)
        is_error = msg.get("status") == "error"
        oid = (
            stable_id(conv.key, "observation", call_id)
            if call_id
            else stable_id(conv.key, "observation", "pos", content_digest(content))
        )
        parent = stable_id(conv.key, "tool_call", call_id) if call_id else state.last_user
        if parent is not None and not state.seen(parent):
            parent = state.last_user
        fields: dict[str, Any] = {
            "messageType": "tool_error" if is_error else "observation",
            "content": content,
            "toolName": msg.get("name"),
            "output": {"error": content} if is_error else {"result": content},
        }
        self._emit(out, state, conv, oid, at, fields, parent=parent)

    # -- tools, retrieval, steps ---------------------------------------------------------

    def _tool_result(self, ev: ToolResult, state: ConvState, out: list[Outgoing]) -> None:
        conv, lim = ev.conv, self.limits
        call_id = ev.tool_call_id
        tcid = (
            stable_id(conv.key, "tool_call", call_id)
            if call_id
            else stable_id(conv.key, "tool_call", "run", ev.key)
        )
        if not state.seen(tcid):
            # a tool run with no model-requested call (invoked directly): record the call
            at = ev.started_at or (ev.at - dt.timedelta(microseconds=1))
            self._emit(
                out,
                state,
                conv,
                tcid,
                at,
                {
                    "messageType": "tool_call",
                    "toolName": ev.tool_name or "unknown_tool",
                    "input": (
                        tool_arguments(ev.input, lim, key="input", mark_invalid=False)
                        if ev.input is not None
                        else None
                    ),
                },
                parent=state.last_user,
            )
            state.turn_has_tools = True
        oid = (
            stable_id(conv.key, "observation", call_id)
            if call_id
            else stable_id(conv.key, "observation", "run", ev.key)
        )
        props: dict[str, Any] = dict(to_jsonable(dict(ev.properties), lim)) if ev.properties else {}
        if ev.started_at is not None:
            props["latencyMs"] = round((ev.at - ev.started_at).total_seconds() * 1000, 3)
        if ev.error is not None:
            info = error_info(ev.error)
            fields: dict[str, Any] = {
                "messageType": "tool_error",
                "toolName": ev.tool_name,
                "content": f"{info['type']}: {info['message']}",
                "output": {"error": info},
                "properties": props or None,
            }
        else:
            result = to_jsonable(ev.output, lim)
            fields = {
                "messageType": "observation",
                "toolName": ev.tool_name,
                "content": wire_text(result, lim),
                "output": {"result": result},
                "properties": props or None,
            }
        self._emit(out, state, conv, oid, ev.at, fields, parent=tcid)

    def _retrieval(self, ev: Retrieval, state: ConvState, out: list[Outgoing]) -> None:
        conv, lim = ev.conv, self.limits
        docs: Sequence[Document] = resolve(ev.documents) or ()
        excerpt_limit = min(lim.max_string, 2_000)
        wire_docs = []
        texts = []
        for d in list(docs)[: lim.max_items]:
            text = d.get("text") or ""
            texts.append(text)
            wire: dict[str, Any] = {"id": d.get("id"), "text": truncate_text(text, excerpt_limit)}
            if d.get("metadata"):
                wire["metadata"] = to_jsonable(d.get("metadata"), lim)
            if d.get("score") is not None:
                wire["score"] = to_jsonable(d.get("score"), lim)
            wire_docs.append(wire)
        props: dict[str, Any] = dict(to_jsonable(dict(ev.properties), lim)) if ev.properties else {}
        if ev.retriever:
            props["retriever"] = ev.retriever
        if ev.started_at is not None:
            props["latencyMs"] = round((ev.at - ev.started_at).total_seconds() * 1000, 3)
        output: dict[str, Any] = {"documents": wire_docs}
        if ev.error is not None:
            output["error"] = error_info(ev.error)
        query = wire_text(ev.query, lim)
        self._emit(
            out,
            state,
            conv,
            stable_id(conv.key, "retrieval", ev.key),
            ev.at,
            {
                "messageType": "retrieval",
                "content": query,
                "input": as_object(ev.query, "query", lim),
                "output": output,
                "properties": props or None,
            },
            parent=state.last_user,
        )
        state.pending_context = [*state.pending_context, *(t for t in texts if t)]

    def _user_input(self, ev: UserInput, state: ConvState, out: list[Outgoing]) -> None:
        mid = stable_id(ev.conv.key, "user", ev.key)
        props = to_jsonable(dict(ev.properties), self.limits) if ev.properties else None
        self._emit(
            out,
            state,
            ev.conv,
            mid,
            ev.at,
            {"role": "user", "content": wire_text(ev.content, self.limits), "properties": props},
        )
        state.last_user = mid
        state.turn_has_tools = False
        state.pending_context = ()

    def _final(self, ev: FinalAnswer, state: ConvState, out: list[Outgoing]) -> None:
        msg: ChatMessage = {"role": "assistant", "content": wire_text(ev.content, self.limits)}
        props = to_jsonable(dict(ev.properties), self.limits) if ev.properties else {}
        mid = stable_id(ev.conv.key, "final", ev.key)
        self._reply(ev.conv, state, msg, mid, ev.at, out, model=ev.model, props=props, final=True)
        self.conversations.remember_answer(ev.conv, ev.key, mid)

    def _embedding(self, ev: Embedding, state: ConvState, out: list[Outgoing]) -> None:
        props: dict[str, Any] = (
            dict(to_jsonable(dict(ev.properties), self.limits)) if ev.properties else {}
        )
        self._put_usage(props, ev.usage, ev.usage_kind, ev.model, None, ev.at)
        if ev.started_at is not None:
            props["latencyMs"] = round((ev.at - ev.started_at).total_seconds() * 1000, 3)
        self._emit(
            out,
            state,
            ev.conv,
            stable_id(ev.conv.key, "embedding", ev.key),
            ev.at,
            {
                "messageType": "embedding",
                "content": f"{ev.count} embedding(s)"
                + (f" of dimension {ev.dimensions}" if ev.dimensions else ""),
                "model": ev.model,
                "input": {"count": ev.count},
                "output": {"count": ev.count, "dimensions": ev.dimensions},
                "properties": props or None,
            },
            parent=state.last_user,
        )

    def _step(self, ev: Step, state: ConvState, out: list[Outgoing]) -> None:
        conv, lim = ev.conv, self.limits
        start_id = stable_id(conv.key, "step", ev.key, "start")
        parent = (
            stable_id(conv.key, "step", ev.parent_key, "start")
            if ev.parent_key
            else state.last_user
        )
        if parent is not None and not state.seen(parent):
            parent = state.last_user
        props = dict(to_jsonable(dict(ev.properties), lim)) if ev.properties else {}
        props["name"] = ev.name
        if ev.kind == "chain":
            if ev.phase == "start":
                self._emit(
                    out,
                    state,
                    conv,
                    start_id,
                    ev.at,
                    {
                        "messageType": "chain_start",
                        "content": ev.name,
                        "input": as_object(ev.data, "input", lim) if ev.data is not None else None,
                        "properties": props,
                    },
                    parent=parent,
                )
                return
            fields: dict[str, Any] = {
                "messageType": "chain_end",
                "content": ev.name,
                "properties": props,
            }
            if ev.phase == "error":
                fields["output"] = {
                    "error": error_info(ev.data if ev.data is not None else "error")
                }
            elif ev.data is not None:
                fields["output"] = as_object(ev.data, "output", lim)
            self._emit(
                out,
                state,
                conv,
                stable_id(conv.key, "step", ev.key, "end"),
                ev.at,
                fields,
                parent=start_id if state.seen(start_id) else parent,
            )
            return
        if ev.phase == "start":
            return
        fields = {"messageType": ev.kind, "content": ev.name, "properties": props}
        if ev.phase == "error":
            fields["output"] = {"error": error_info(ev.data if ev.data is not None else "error")}
        elif ev.data is not None:
            fields["output"] = as_object(ev.data, "output", lim)
        self._emit(out, state, conv, start_id, ev.at, fields, parent=parent)

    def _raw(self, ev: RawMessage, state: ConvState, out: list[Outgoing]) -> None:
        lim = self.limits
        fields = dict(ev.fields)
        for name in ("input", "output", "properties"):
            if fields.get(name) is not None:
                fields[name] = as_object(fields[name], name, lim)
        for name in ("content", "context"):
            if fields.get(name) is not None:
                fields[name] = wire_text(fields[name], lim)
        item = MessageItem(**fields)  # raises a clear ValueError for a malformed message
        wire = item.model_dump(by_alias=True, exclude_none=True, mode="json")
        mid = wire.pop("externalMessageId", None) or stable_id(ev.conv.key, "raw", ev.key)
        wire.pop("createdAt", None)
        parent = wire.pop("parentExternalMessageId", None)
        if parent is None and ev.parent_key is not None:
            parent = stable_id(ev.conv.key, "raw", ev.parent_key)
        created = fields.get("created_at")
        at = ev.at
        if isinstance(created, str):
            with contextlib.suppress(ValueError):
                at = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
        elif isinstance(created, dt.datetime):
            at = created
        self._emit(out, state, ev.conv, mid, at, wire, parent=parent)
        if wire.get("role") == "user" or wire.get("messageType") == "user_message":
            state.last_user = mid
            state.turn_has_tools = False

    # -- shared by the events --------------------------------------------------------

    def _emit(
        self,
        out: list[Outgoing],
        state: ConvState,
        conv: Conv,
        mid: str,
        at: dt.datetime,
        fields: dict[str, Any],
        parent: str | None = None,
    ) -> bool:
        """Append one message unless its id was already sent in this conversation."""
        if state.seen(mid):
            return False
        msg: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}
        if self.mask is not None:
            for name in ("content", "context", "input", "output", "properties"):
                if name in msg:
                    msg[name] = apply_mask(self.mask, msg[name])
        msg["externalMessageId"] = mid
        msg["createdAt"] = iso_utc(at)
        if parent is not None and parent != mid:
            msg["parentExternalMessageId"] = parent
        state.mark(mid)
        out.append(Outgoing(conv, msg))
        return True

    def _message_id(self, conv: Conv, msg: ChatMessage, position: int) -> str:
        native = msg.get("id")
        if native:
            return stable_id(conv.key, "msg", native)
        digest_src = msg.get("content") or ""
        calls = msg.get("tool_calls") or []
        if calls:
            digest_src += "|" + ",".join(str(c.get("id") or c.get("name")) for c in calls)
        return stable_id(
            conv.key, "pos", str(position), msg.get("role"), content_digest(digest_src)
        )

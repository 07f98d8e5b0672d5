"""The recorder's state: outgoing messages, sent-id memory, prompts, ids (MapperBase)."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Sequence
from typing import Any

from .context import Conv
from .events import (
    ChatMessage,
    SystemPrompt,
)
from .ids import content_digest, sample_fraction, stable_id
from .masking import MaskFn
from .safejson import Limits, to_jsonable, truncate_text
from .targets import MAX_TARGETS, BoundedMap

log = logging.getLogger("gf_integrations")

_MAX_SENT_IDS = 50_000  # in total, all conversations together (~4 MB at most)
_MAX_CONVERSATIONS = 2_000
_CONTEXT_SEPARATOR = "\n\n"


@dataclasses.dataclass(slots=True)
class Outgoing:
    """One wire message ready for batching, with the conversation it belongs to."""

    conv: Conv
    message: dict[str, Any]
    # The conversation's system prompt in wire form, attached to the first message
    # mapped after it was set or changed.
    system_prompt: str | dict[str, Any] | None = None

    @property
    def batch_key(self) -> tuple[str | None, str, str, str | None]:
        return batch_key(self.conv)


def batch_key(c: Conv) -> tuple[str | None, str, str, str | None]:
    """What one ``POST /messages`` batch shares: the conversation's request-level identity."""
    return (
        c.product_id,
        c.external_conversation_id,
        c.external_user_id,
        c.external_organization_id,
    )


class _SentIds:
    """Ids already sent, across all conversations, the newest ``limit`` of them.

    Only an optimisation: the server deduplicates by ``externalMessageId`` anyway, so an
    evicted id costs at most one resend, never a duplicate. One global bound (instead of a
    bound per conversation) keeps memory flat however many conversations a process sees.
    Keys are ``hash((conversation, id))`` ints, in a set plus a FIFO of them: ~4 MB at the
    cap, where an OrderedDict (a linked node per entry) took ~10 MB.
    """

    __slots__ = ("_ids", "_order", "limit")

    def __init__(self, limit: int) -> None:
        self._ids: set[int] = set()
        self._order: collections.deque[int] = collections.deque()
        self.limit = limit

    def __contains__(self, key: int) -> bool:
        return key in self._ids

    def add(self, key: int) -> None:
        ids = self._ids
        if key in ids:
            return
        ids.add(key)
        order = self._order
        order.append(key)
        if len(order) > self.limit:
            ids.discard(order.popleft())

    def __len__(self) -> int:
        return len(self._ids)


class _ConvState:
    __slots__ = (
        "conv",
        "key",
        "last_user",
        "pending_context",
        "pending_prompt",
        "prompt_digest",
        "prompt_source",
        "sent",
        "turn_has_tools",
    )

    def __init__(self, key: str, sent: _SentIds) -> None:
        self.key = key
        self.conv: Conv | None = None  # the identity its messages were last sent with
        self.sent = sent
        self.prompt_digest: str | None = None
        self.prompt_source: SystemPrompt | None = None  # last prompt seen, before mapping
        self.pending_prompt: str | dict[str, Any] | None = None
        self.last_user: str | None = None
        self.turn_has_tools = False
        # retrieved texts for the next answer; an empty tuple until there are some (one
        # object fewer per conversation for the garbage collector to traverse)
        self.pending_context: Sequence[str] = ()

    def seen(self, mid: str) -> bool:
        return hash((self.key, mid)) in self.sent

    def mark(self, mid: str) -> None:
        self.sent.add(hash((self.key, mid)))


def _iso(t: dt.datetime) -> str:
    if t.tzinfo is dt.timezone.utc:  # the common case (events.now()): no conversion
        return t.isoformat().replace("+00:00", "Z")
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _text(value: Any, limits: Limits) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return truncate_text(value, limits.max_string)
    converted = to_jsonable(value, limits)
    if isinstance(converted, str):
        return converted
    return truncate_text(json.dumps(converted, ensure_ascii=False), limits.max_string)


def _error_info(error: BaseException | str) -> dict[str, str]:
    if isinstance(error, BaseException):
        return {"type": type(error).__name__, "message": str(error)[:4_000]}
    return {"type": "Error", "message": str(error)[:4_000]}


class MapperBase:
    """The mapper's state and shared helpers; :class:`~.recorder.Mapper` adds the events."""

    def __init__(
        self,
        *,
        limits: Limits,
        mask: MaskFn | None = None,
        sample_rate: float = 1.0,
    ) -> None:
        self.limits = limits
        self.mask = mask
        self.sample_rate = sample_rate
        self.sampled_out = 0
        self._convs: collections.OrderedDict[str, _ConvState] = collections.OrderedDict()
        self._sent = _SentIds(_MAX_SENT_IDS)
        # (conversation, event key) -> externalMessageId of the answer that event produced,
        # so a rating of "this run / response" finds the message (see core/targets.py)
        self._answers: BoundedMap[int, str] = BoundedMap(MAX_TARGETS)
        # the last prompt mapped, its wire form and digest: shared by the next conversation
        # that has the same prompt (wire values are only ever encoded, never changed)
        self._last_prompt: tuple[SystemPrompt, str | dict[str, Any], str] | None = None

    # -- public ------------------------------------------------------------------------

    def keep(self, conv: Conv) -> bool:
        """Deterministic client-side sampling by conversation key."""
        if conv.force_sample or self.sample_rate >= 1.0:
            return True
        return sample_fraction(conv.key) < self.sample_rate

    def answer_id(self, conv: Conv, key: str) -> str | None:
        """The ``externalMessageId`` of the answer the event ``key`` produced, if mapped."""
        return self._answers.get(hash((conv.key, key)))

    def masked(self, value: Any) -> Any:
        """``value`` through the mask hook (unchanged without one)."""
        return value if self.mask is None else self._masked(value)

    # -- state -------------------------------------------------------------------------

    def recorded_conv(self, conv: Conv) -> Conv:
        """The identity ``conv``'s conversation was last mapped with (its user and
        organization may differ from a ``gf.conversation`` scope's), else ``conv``."""
        state = self._convs.get(conv.key)
        return state.conv if state is not None and state.conv is not None else conv

    def _state(self, key: str) -> _ConvState:
        state = self._convs.get(key)
        if state is None:
            state = self._convs[key] = _ConvState(key, self._sent)
            if len(self._convs) > _MAX_CONVERSATIONS:
                self._convs.popitem(last=False)
        else:
            self._convs.move_to_end(key)
        return state

    def _emit(
        self,
        out: list[Outgoing],
        state: _ConvState,
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
                    msg[name] = self._masked(msg[name])
        msg["externalMessageId"] = mid
        msg["createdAt"] = _iso(at)
        if parent is not None and parent != mid:
            msg["parentExternalMessageId"] = parent
        state.mark(mid)
        out.append(Outgoing(conv, msg))
        return True

    def _masked(self, value: Any) -> Any:
        assert self.mask is not None
        try:
            return self.mask(value)
        except Exception:
            log.warning("gf_integrations: mask function raised; field replaced by a placeholder")
            return "[masking failed]" if isinstance(value, str) else {"masked": "[masking failed]"}

    # -- system prompt -----------------------------------------------------------------

    def _set_prompt(self, conv: Conv, state: _ConvState, prompt: SystemPrompt) -> None:
        if prompt == state.prompt_source:
            return  # the same prompt as last call (the usual case): skip mapping + digest
        state.prompt_source = prompt
        cached = self._last_prompt
        if cached is not None and cached[0] == prompt:
            # the prompt every conversation shares (an app's fixed system prompt)
            _, wire, digest = cached
        else:
            mapped = self._prompt_wire(prompt)
            if mapped is None:
                return
            wire = mapped
            digest = content_digest(json.dumps(wire, sort_keys=True, ensure_ascii=False))
            self._last_prompt = (prompt, wire, digest)
        if digest != state.prompt_digest:
            state.prompt_digest = digest
            state.pending_prompt = wire

    def _prompt_wire(self, prompt: SystemPrompt) -> str | dict[str, Any] | None:
        lim = self.limits
        if prompt.components:
            comps = []
            for comp in prompt.components:
                content = comp.get("content")
                if content is None:
                    continue
                c: dict[str, Any] = {"content": truncate_text(str(content), lim.max_string)}
                for src, dst in (
                    ("name", "name"),
                    ("type", "type"),
                    ("source", "source"),
                    ("is_dynamic", "isDynamic"),
                    ("external_component_id", "externalComponentId"),
                ):
                    if comp.get(src) is not None:
                        c[dst] = comp.get(src)
                if self.mask is not None:
                    c["content"] = self._masked(c["content"])
                comps.append(c)
            if not comps:
                return None
            obj: dict[str, Any] = {"components": comps}
            if prompt.variables:
                variables = {str(k): _text(v, lim) or "" for k, v in prompt.variables.items()}
                obj["variables"] = self._masked(variables) if self.mask else variables
            if prompt.external_prompt_id:
                obj["externalPromptId"] = prompt.external_prompt_id
            return obj
        if prompt.content:
            text = truncate_text(prompt.content, lim.max_string)
            if self.mask is not None:
                text = self._masked(text)
            if prompt.external_prompt_id:
                return {"content": text, "externalPromptId": prompt.external_prompt_id}
            return text
        return None

    # -- chat --------------------------------------------------------------------------

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

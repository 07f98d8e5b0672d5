"""What the recorder remembers per conversation, bounded: the identity its messages went
out with, ids already sent, its system prompt, pending retrieval context, and which message
answered which run (for ``gf.rate``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from ..common.bounded import BoundedMap, BoundedSet
from .context import Conv
from .events import SystemPrompt
from .targets import MAX_TARGETS

MAX_SENT_IDS = 50_000  # in total, all conversations together (~4 MB at most)
MAX_CONVERSATIONS = 2_000


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


class ConvState:
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

    def __init__(self, key: str, sent: BoundedSet) -> None:
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


class Conversations:
    """The newest ``MAX_CONVERSATIONS`` conversations' state, one set of sent ids for all,
    and the answers events produced."""

    __slots__ = ("_answers", "_convs", "_sent")

    def __init__(self) -> None:
        self._convs: BoundedMap[str, ConvState] = BoundedMap(MAX_CONVERSATIONS, lru=True)
        # Only an optimisation: the server deduplicates by ``externalMessageId`` anyway, so
        # an evicted id costs at most one resend, never a duplicate. One global bound
        # (instead of one per conversation) keeps memory flat however many conversations.
        self._sent = BoundedSet(MAX_SENT_IDS)
        # (conversation, event key) -> externalMessageId of the answer that event produced,
        # so a rating of "this run / response" finds the message (see core/targets.py)
        self._answers: BoundedMap[int, str] = BoundedMap(MAX_TARGETS)

    def state(self, key: str) -> ConvState:
        """The state of conversation ``key``, created (and the oldest evicted) if new."""
        state = self._convs.get(key)
        if state is None:
            state = ConvState(key, self._sent)
            self._convs.put(key, state)
        return state

    def recorded_conv(self, conv: Conv) -> Conv:
        """The identity ``conv``'s conversation was last mapped with (its user and
        organization may differ from a ``gf.conversation`` scope's), else ``conv``."""
        state = self._convs.get(conv.key)
        return state.conv if state is not None and state.conv is not None else conv

    def remember_answer(self, conv: Conv, key: str, message_id: str) -> None:
        """Event ``key`` of ``conv`` was answered by ``message_id``."""
        self._answers.put(hash((conv.key, key)), message_id)

    def answer_id(self, conv: Conv, key: str) -> str | None:
        """The ``externalMessageId`` of the answer the event ``key`` produced, if mapped."""
        return self._answers.get(hash((conv.key, key)))

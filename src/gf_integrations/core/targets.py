"""What a rating or an event is about, from what the user holds right after a call.

Each integration remembers, in a bounded map, which conversation and which answer a
LangChain run, an OpenAI response or a LlamaIndex result produced: an :class:`AnswerRef`
(the conversation and the key of the event whose reply was the answer). The answer's
``externalMessageId`` itself is only known on the worker, where the recorder maps that
event (the same queue, so it is always mapped first): the recorder keeps a bounded index
from (conversation, event key) to the id it sent. Integrations register a resolver with
:func:`register_target_resolver`; :func:`resolve_target` asks them in turn.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable
from typing import Any, Generic, NamedTuple, TypeVar

from ..common.bounded import BoundedMap
from .context import Conv

__all__ = [
    "AnswerMap",
    "AnswerRef",
    "BoundedMap",
    "ConversationId",
    "MessageId",
    "ObjectMap",
    "register_target_resolver",
    "resolve_target",
]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: Answers remembered per integration; older ones are forgotten (a rating of a
#: forgotten answer rates its conversation instead, with a warning).
MAX_TARGETS = 10_000


class MessageId(str):
    """An explicit ``externalMessageId`` to rate: ``gf.rate(gf.MessageId("m-1"), ...)``."""

    __slots__ = ()


class ConversationId(str):
    """An explicit ``externalConversationId``: ``gf.rate(gf.ConversationId("c-1"), ...)``."""

    __slots__ = ()


class AnswerRef(NamedTuple):
    """A recorded answer: its conversation, and the key of the event that produced it.

    ``key`` None means the conversation as a whole. (A tuple: it is built on the host's
    thread for every recorded answer, and a tuple is the cheapest record to build.)
    """

    conv: Conv
    key: str | None = None


class AnswerMap(Generic[K]):
    """A bounded map of answers, each kept as one plain tuple of its fields.

    The garbage collector stops tracking a plain tuple of strings the first time it sees
    one (it never does for a class instance or a NamedTuple), so the thousands of answers
    remembered here add nothing to the host's full collections (as AnswerRef + Conv pairs
    they made each full collection of a LangChain process ~15% slower).
    """

    __slots__ = ("_map",)

    def __init__(self, limit: int = MAX_TARGETS) -> None:
        self._map: BoundedMap[K, tuple[Any, ...]] = BoundedMap(limit)

    def put(self, key: K, conv: Conv, event_key: str | None) -> None:
        """Remember the answer the event ``event_key`` of ``conv`` produced."""
        self._map.put(
            key,
            (
                conv.external_conversation_id,
                conv.external_user_id,
                conv.external_organization_id,
                conv.product_id,
                conv.properties,
                conv.force_sample,
                event_key,
            ),
        )

    def get(self, key: K) -> AnswerRef | None:
        """The answer remembered for ``key``, or None."""
        fields = self._map.get(key)
        if fields is None:
            return None
        return AnswerRef(Conv(*fields[:6]), fields[6])

    def __len__(self) -> int:
        return len(self._map)


class ObjectMap(Generic[V]):
    """A bounded map keyed by object identity, without keeping the objects alive.

    Objects that cannot be weakly referenced are not remembered (their ``id`` could be
    reused by another object once they are gone).
    """

    __slots__ = ("_map",)

    def __init__(self, limit: int = MAX_TARGETS) -> None:
        self._map: BoundedMap[int, tuple[weakref.ref[Any], V]] = BoundedMap(limit)

    def put(self, obj: Any, value: V) -> None:
        """Remember ``value`` for ``obj`` while it is alive."""
        try:
            ref = weakref.ref(obj)
        except TypeError:
            return
        self._map.put(id(obj), (ref, value))

    def get(self, obj: Any) -> V | None:
        """The value remembered for this very object, or None."""
        entry = self._map.get(id(obj))
        if entry is None or entry[0]() is not obj:
            return None
        return entry[1]


_resolvers: list[Callable[[Any], AnswerRef | None]] = []


def register_target_resolver(resolver: Callable[[Any], AnswerRef | None]) -> None:
    """Register an integration's resolver (idempotent); it returns None for foreign objects."""
    if resolver not in _resolvers:
        _resolvers.append(resolver)


def resolve_target(target: Any) -> AnswerRef | None:
    """The answer (or conversation) an integration recorded for ``target``, or None."""
    for resolver in _resolvers:
        try:
            ref = resolver(target)
        except Exception:
            continue
        if ref is not None:
            return ref
    return None

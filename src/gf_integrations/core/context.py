"""Conversation identity: the ``conversation(...)`` context and the resolution order.

The order is docs/DESIGN.md section 4; :meth:`GreenflashClient.resolve
<gf_integrations.GreenflashClient.resolve>` is its one implementation.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any


@dataclasses.dataclass(frozen=True, slots=True)
class ConversationScope:
    """What ``gf.conversation(...)`` sets for the code inside it."""

    external_conversation_id: str | None = None
    external_user_id: str | None = None
    external_organization_id: str | None = None
    product_id: str | None = None
    properties: Mapping[str, Any] | None = None
    force_sample: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Conv:
    """A resolved conversation identity, attached to every neutral event."""

    external_conversation_id: str
    external_user_id: str
    external_organization_id: str | None = None
    product_id: str | None = None
    properties: Mapping[str, Any] | None = None
    force_sample: bool = False

    @property
    def key(self) -> str:
        """The conversation key used for ids, sampling and per-conversation state."""
        return f"{self.product_id or ''}\x1f{self.external_conversation_id}"


def with_conversation_id(conv: Conv, conversation_id: str) -> Conv:
    """``conv`` with another conversation id (what ``dataclasses.replace`` does, cheaper:
    it runs per call for identities resolved once and reused)."""
    return Conv(
        conversation_id,
        conv.external_user_id,
        conv.external_organization_id,
        conv.product_id,
        conv.properties,
        conv.force_sample,
    )


_scope: contextvars.ContextVar[ConversationScope | None] = contextvars.ContextVar(
    "gf_conversation_scope", default=None
)


def current_scope() -> ConversationScope | None:
    """The innermost active ``conversation(...)`` scope, if any."""
    return _scope.get()


@contextlib.contextmanager
def conversation(
    external_conversation_id: str | None = None,
    *,
    external_user_id: str | None = None,
    external_organization_id: str | None = None,
    product_id: str | None = None,
    properties: Mapping[str, Any] | None = None,
    force_sample: bool = False,
) -> Iterator[ConversationScope]:
    """Group everything recorded inside this block into one conversation.

    Works across asyncio tasks and threads started with a copied context
    (``contextvars.copy_context().run``). Unset fields fall back to an enclosing
    ``conversation(...)`` block.
    """
    outer = _scope.get()
    props: dict[str, Any] = dict(outer.properties or {}) if outer else {}
    props.update(properties or {})
    scope = ConversationScope(
        external_conversation_id=external_conversation_id
        or (outer.external_conversation_id if outer else None),
        external_user_id=external_user_id or (outer.external_user_id if outer else None),
        external_organization_id=external_organization_id
        or (outer.external_organization_id if outer else None),
        product_id=product_id or (outer.product_id if outer else None),
        properties=props or None,
        force_sample=force_sample or (outer.force_sample if outer else False),
    )
    token = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(token)


def _first(*values: str | None) -> str | None:
    for v in values:
        if v:
            return str(v)
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class IdentityDefaults:
    """Identity keywords given to a handler, instrumentor or ``wrap_openai``."""

    external_user_id: str | None = None
    external_conversation_id: str | None = None
    external_organization_id: str | None = None
    product_id: str | None = None
    properties: Mapping[str, Any] | None = None


def resolve_conv(
    *,
    explicit: IdentityDefaults | None = None,
    scope: ConversationScope | None = None,
    native_conversation_id: str | None = None,
    native_user_id: str | None = None,
    native_organization_id: str | None = None,
    configured_user_id: str | None = None,
    configured_organization_id: str | None = None,
    configured_product_id: str | None = None,
    fallback_conversation_id: str,
    fallback_user_id: str = "anonymous",
    extra_properties: Mapping[str, Any] | None = None,
) -> Conv:
    """Apply the resolution order of docs/DESIGN.md section 4 and return a :class:`Conv`.

    ``fallback_conversation_id`` is the derived or generated id (per root run, or
    derived from the opening messages for stateless OpenAI apps).
    """
    ex = explicit or IdentityDefaults()
    sc = scope or ConversationScope()
    props: dict[str, Any] = {}
    for source in (extra_properties, sc.properties, ex.properties):
        if source:
            props.update(source)
    return Conv(
        external_conversation_id=_first(
            ex.external_conversation_id, sc.external_conversation_id, native_conversation_id
        )
        or fallback_conversation_id,
        external_user_id=_first(
            ex.external_user_id, sc.external_user_id, native_user_id, configured_user_id
        )
        or fallback_user_id,
        external_organization_id=_first(
            ex.external_organization_id,
            sc.external_organization_id,
            native_organization_id,
            configured_organization_id,
        ),
        product_id=_first(ex.product_id, sc.product_id, configured_product_id),
        properties=props or None,
        force_sample=sc.force_sample,
    )


# Probes registered by outer integrations (LangChain, LlamaIndex): each answers "is one
# of our LLM runs active in the current context?" so that an inner integration (the
# OpenAI wrapper) does not log the same call a second time.
_capture_probes: list[Callable[[], bool]] = []


def register_capture_probe(probe: Callable[[], bool]) -> None:
    """Register a probe for :func:`outer_llm_capture_active` (idempotent)."""
    if probe not in _capture_probes:
        _capture_probes.append(probe)


def outer_llm_capture_active() -> bool:
    """True when an outer integration is already recording the current LLM call."""
    for probe in _capture_probes:
        try:
            if probe():
                return True
        except Exception:
            continue
    return False

"""The identity keywords every public entry point takes, validated in one place.

``IdentityKwargs`` types them (``**identity: Unpack[IdentityKwargs]``);
:func:`identity_keywords` checks them and fails loudly on an unknown keyword or a wrong
``client=``; :class:`FixedIdentity` resolves them once per client for the common call. The
resolution order they take part in is docs/DESIGN.md section 4.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, TypedDict

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # typing_extensions comes with pydantic
    from typing_extensions import Unpack

from ..client import GreenflashClient
from ..core.context import Conv, IdentityDefaults, with_conversation_id


class IdentityKwargs(TypedDict, total=False):
    """The identity keywords of ``wrap_*``, the handler, the instrumentor, the processor."""

    #: the user every recorded message belongs to, unless a scope or the framework says
    external_user_id: str | None
    #: the conversation every call lands in (default: one per root run / derived)
    external_conversation_id: str | None
    external_organization_id: str | None
    #: the Greenflash product (default: the configured one)
    product_id: str | None
    #: conversation properties sent with every message
    properties: Mapping[str, Any] | None
    #: the GreenflashClient to record through (default: the configured default client)
    client: GreenflashClient | None


_NAMES = frozenset(IdentityKwargs.__annotations__)

__all__ = ["FixedIdentity", "IdentityKwargs", "Unpack", "identity_keywords"]


def identity_keywords(
    owner: str, identity: Mapping[str, Any]
) -> tuple[IdentityDefaults, GreenflashClient | None]:
    """Validate a public entry point's identity keywords; fails here, at construction.

    ``owner`` names the entry point in the error (``"wrap_openai"``,
    ``"GreenflashCallbackHandler"``). ``properties`` is copied: the caller's dict may change.

    Raises:
        TypeError: an unknown keyword, or a ``client=`` that is not a GreenflashClient.
    """
    unknown = sorted(set(identity) - _NAMES)
    if unknown:
        raise TypeError(f"{owner}() got an unexpected keyword argument {unknown[0]!r}")
    client = identity.get("client")
    if client is not None and not isinstance(client, GreenflashClient):
        raise TypeError(f"{owner}(client=...) expects a gf_integrations.GreenflashClient")
    for name in (
        "external_user_id",
        "external_conversation_id",
        "external_organization_id",
        "product_id",
    ):
        value = identity.get(name)
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{owner}({name}=...) expects a str, got {type(value).__name__}")
    properties = identity.get("properties")
    if properties is not None and not isinstance(properties, Mapping):
        raise TypeError(f"{owner}(properties=...) expects a mapping")
    defaults = IdentityDefaults(
        external_user_id=identity.get("external_user_id"),
        external_conversation_id=identity.get("external_conversation_id"),
        external_organization_id=identity.get("external_organization_id"),
        product_id=identity.get("product_id"),
        properties=dict(properties) if properties else None,
    )
    return defaults, client


class FixedIdentity:
    """An entry point's identity keywords as a client resolves them, computed once.

    For the common call: no ``conversation(...)`` scope and no framework-native ids, so only
    the keywords and the client's defaults apply. Neither changes, so the resolution runs
    once per client and each call only varies its generated conversation id (this runs on
    the host's thread for every root run or wrapped call).
    """

    __slots__ = ("_resolved", "defaults")

    def __init__(self, defaults: IdentityDefaults) -> None:
        self.defaults = defaults
        self._resolved: tuple[GreenflashClient, Conv] | None = None

    def conv(self, client: GreenflashClient, generated_id: str) -> Conv:
        """What ``client.resolve(defaults=...)`` gives, with ``generated_id`` as the
        conversation id unless the keywords fix one."""
        resolved = self._resolved
        if resolved is None or resolved[0] is not client:
            resolved = self._resolved = (client, client.resolve(defaults=self.defaults))
        if self.defaults.external_conversation_id:
            return resolved[1]
        return with_conversation_id(resolved[1], generated_id)

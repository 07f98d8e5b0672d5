"""One OpenAI call in flight: ``wrap_openai``'s settings, the call's state, its identity.

The identity rules are those of docs/DESIGN.md; this module only feeds them the request's
native ids (``user`` / ``safety_identifier``, a Responses conversation or chain).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..client import GreenflashClient
from ..core.context import IdentityDefaults
from ..kit import CallState, ResponseAnswers, WrapConfig, attribute_of, resolve_identity

if TYPE_CHECKING:
    from .endpoints import Endpoint


class Config(WrapConfig):
    """``wrap_openai``'s settings: the shared identity settings."""

    __slots__ = ()
    label = "OpenAI"

    def __init__(
        self, defaults: IdentityDefaults, gf_client: GreenflashClient | None, provider: str
    ) -> None:
        super().__init__(defaults, gf_client, provider)


class Call(CallState):
    """One call in flight; ``endpoint`` is its row in endpoints.py."""

    __slots__ = ("chained", "endpoint", "inputs", "instructions")

    def __init__(
        self, cfg: Config, gfc: GreenflashClient, endpoint: Endpoint, kwargs: dict[str, Any]
    ):
        super().__init__(cfg, gfc, endpoint.api, kwargs)
        self.cfg: Config = cfg
        self.endpoint = endpoint
        self.chained = False
        self.instructions: Any = None
        self.inputs: Sequence[Any] = ()

    def properties(self, response_id: Any = None) -> dict[str, Any]:
        props = super().properties(response_id)
        if self.cfg.provider == "azure" and self.model:
            props["deployment"] = self.model
        return props


def resolve_call(
    call: Call, native_conv: str | None, opening: Callable[[], tuple[str, str]] | None
) -> Any:
    kwargs = call.kwargs
    user = kwargs.get("user")
    native_user = user if isinstance(user, str) and user else None
    if native_user is None:
        safety = kwargs.get("safety_identifier")
        native_user = safety if isinstance(safety, str) and safety else None
    return resolve_identity(
        call,
        native_conversation_id=native_conv,
        native_user_id=native_user,
        opening=opening,
        prefix="openai",
    )


# response id -> the answer it produced, for gf.rate(response) (see core/targets.py): a
# response id, or an OpenAI response object (its ``id``)
answers = ResponseAnswers(attribute_of("openai.", "id"))
remember_answer = answers.remember
rating_target = answers.target

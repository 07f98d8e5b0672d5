"""One Anthropic call in flight: ``wrap_anthropic``'s settings and the call's state."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..client import GreenflashClient
from ..kit import (
    CallState,
    WrapConfig,
    wrapper_failed,
)


def log_failure(where: str, exc: BaseException) -> None:
    wrapper_failed("Anthropic", where, exc)


class Config(WrapConfig):
    __slots__ = ()
    label = "Anthropic"


class Call(CallState):
    __slots__ = ("inputs", "system")

    def __init__(self, cfg: Config, gfc: GreenflashClient, api: str, kwargs: dict[str, Any]):
        super().__init__(cfg, gfc, api, kwargs)
        self.inputs: Sequence[Any] = ()
        self.system: Any = None

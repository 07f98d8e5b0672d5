"""One Gemini call in flight: ``wrap_genai``'s settings, the call's state, and the answers
remembered for ``gf.rate``."""

from __future__ import annotations

from typing import Any

from ..client import GreenflashClient
from ..core.targets import AnswerMap, AnswerRef
from ..kit import CallState, WrapConfig, wrapper_failed


def log_failure(where: str, exc: BaseException) -> None:
    wrapper_failed("Google GenAI", where, exc)


class Config(WrapConfig):
    __slots__ = ()
    label = "Google GenAI"


class Call(CallState):
    """One call: the request's ``contents`` (a shallow copy) and its system instruction."""

    __slots__ = ("contents", "system")

    def __init__(self, cfg: Config, gfc: GreenflashClient, api: str, kwargs: dict[str, Any]):
        super().__init__(cfg, gfc, api, kwargs)
        self.contents: Any = None
        self.system: Any = None

    def error_properties(self, exc: BaseException) -> dict[str, Any]:
        """google-genai's ``APIError`` carries the HTTP status as ``code``."""
        code = getattr(exc, "code", None)
        return {"statusCode": code} if isinstance(code, int) else {}


# response id -> the answer it produced, for gf.rate(response) (see core/targets.py)
answers: AnswerMap[str] = AnswerMap()


def remember_answer(response_id: Any, call: Call) -> None:
    """Remember which answer ``response_id`` produced (``gf.rate`` of the response)."""
    if isinstance(response_id, str) and response_id:
        answers.put(response_id, call.conv, call.key)


def rating_target(target: Any) -> AnswerRef | None:
    """``gf.rate`` targets: a response id, or a ``GenerateContentResponse`` (its id)."""
    if isinstance(target, str):
        return answers.get(target)
    if type(target).__module__.startswith("google.genai."):
        rid = getattr(target, "response_id", None)
        return answers.get(rid) if isinstance(rid, str) else None
    return None

"""One Gemini call in flight: ``wrap_genai``'s settings, the call's state, and the answers
remembered for ``gf.rate``."""

from __future__ import annotations

from typing import Any

from ..client import GreenflashClient
from ..kit import CallState, ResponseAnswers, WrapConfig, attribute_of, wrapper_failed


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


# response id -> the answer it produced, for gf.rate(response) (see core/targets.py): a
# response id, or a ``GenerateContentResponse`` (its ``response_id``)
answers = ResponseAnswers(attribute_of("google.genai.", "response_id"))
remember_answer = answers.remember
rating_target = answers.target

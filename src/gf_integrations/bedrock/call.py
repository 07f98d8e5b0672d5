"""One Bedrock Runtime call in flight: ``wrap_bedrock``'s settings, the call's state, the
answers remembered for ``gf.rate``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..client import GreenflashClient
from ..kit import CallState, ResponseAnswers, WrapConfig, wrapper_failed


def log_failure(where: str, exc: BaseException) -> None:
    wrapper_failed("Bedrock", where, exc)


class Config(WrapConfig):
    """``wrap_bedrock``'s settings."""

    __slots__ = ()
    label = "Bedrock"


class Call(CallState):
    """One call in flight: the request's references, snapshotted on the caller's thread."""

    __slots__ = ("invocation", "messages", "system")

    def __init__(self, cfg: Config, gfc: GreenflashClient, api: str, kwargs: dict[str, Any]):
        super().__init__(cfg, gfc, api, kwargs)
        model = kwargs.get("modelId")
        self.model = model if isinstance(model, str) else None
        self.messages: Sequence[Any] = ()
        self.system: Any = None
        self.invocation: Any = None  # invoke.Invocation for invoke_model calls

    def error_properties(self, exc: BaseException) -> dict[str, Any]:
        """A botocore ``ClientError`` carries the HTTP status, the AWS error code and the
        request id in its ``response``."""
        props: dict[str, Any] = {}
        response = getattr(exc, "response", None)
        if isinstance(response, Mapping):
            meta = response.get("ResponseMetadata")
            status = meta.get("HTTPStatusCode") if isinstance(meta, Mapping) else None
            if isinstance(status, int):
                props["statusCode"] = status
            error = response.get("Error")
            code = error.get("Code") if isinstance(error, Mapping) else None
            if isinstance(code, str) and code:
                props["errorCode"] = code
            rid = request_id(response)
            if rid:
                props["responseId"] = rid
        return props


def request_id(response: Any) -> str | None:
    """The AWS request id botocore puts in every response (``ResponseMetadata``)."""
    meta = response.get("ResponseMetadata") if isinstance(response, Mapping) else None
    rid = meta.get("RequestId") if isinstance(meta, Mapping) else None
    return rid if isinstance(rid, str) and rid else None


# AWS request id -> the answer it produced, for gf.rate(response) (see core/targets.py): the
# request id itself, or a Bedrock response dict (its ``ResponseMetadata.RequestId``)
answers = ResponseAnswers(request_id)
remember_answer = answers.remember
rating_target = answers.target

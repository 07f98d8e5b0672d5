"""gf-integrations: send LangChain/LangGraph, LlamaIndex, OpenAI and Anthropic
conversations and agent traces to Greenflash.

The package root imports no framework; each integration lives in its own module
(:mod:`gf_integrations.langchain`, :mod:`gf_integrations.llamaindex`,
:mod:`gf_integrations.openai`, :mod:`gf_integrations.anthropic`) and imports its
framework lazily.

``gf.serverless`` is the decorator for handlers on serverless platforms
(:mod:`gf_integrations.faas`, imported on first use). Inside the AWS Lambda runtime, whose
modules are already loaded when the function's module imports this package, its runtime
client is patched here so that each invocation's records are delivered before its response.
"""

from __future__ import annotations

import sys as _sys
import typing as _typing

from .client import GreenflashClient, configure, flush, get_client, shutdown
from .core.context import conversation
from .core.masking import redact_pii
from .core.settings import ConfigurationError
from .feedback import (
    ConversationId,
    MessageId,
    identify_organization,
    identify_user,
    rate,
    track_event,
)

if _typing.TYPE_CHECKING:
    from .faas.decorator import serverless

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "ConversationId",
    "GreenflashClient",
    "MessageId",
    "__version__",
    "configure",
    "conversation",
    "flush",
    "get_client",
    "identify_organization",
    "identify_user",
    "rate",
    "redact_pii",
    "serverless",
    "shutdown",
    "track_event",
]


def __getattr__(name: str) -> _typing.Any:
    if name == "serverless":  # imported on first use: most programs never need it
        from .faas.decorator import serverless

        globals()["serverless"] = serverless
        return serverless
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _patch_lambda_runtime() -> None:
    # The Lambda runtime (awslambdaric) imported the function's module, which imported us:
    # patch its runtime client now. Only when it is loaded: we never import it.
    if "awslambdaric.lambda_runtime_client" not in _sys.modules:
        return
    try:
        from .faas.aws_lambda import install

        install()
    except Exception:
        pass


_patch_lambda_runtime()

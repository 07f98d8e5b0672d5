"""gf-integrations: send LangChain/LangGraph, LlamaIndex, OpenAI and Anthropic
conversations and agent traces to Greenflash.

The package root imports no framework; each integration lives in its own module
(:mod:`gf_integrations.langchain`, :mod:`gf_integrations.llamaindex`,
:mod:`gf_integrations.openai`, :mod:`gf_integrations.anthropic`) and imports its
framework lazily.
"""

from __future__ import annotations

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
    "shutdown",
    "track_event",
]

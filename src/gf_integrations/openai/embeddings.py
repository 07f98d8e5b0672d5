"""Embeddings calls: recorded as an :class:`~gf_integrations.core.events.Embedding`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core.events import ChatMessage, Embedding
from ..kit import lazy_usage
from .call import Call, resolve_call


def begin_embeddings(call: Call, kwargs: dict[str, Any]) -> None:
    call.conv = resolve_call(call, None, None)


def embeddings_inputs_fn(call: Call) -> Callable[[], list[ChatMessage]]:
    """A failed embeddings call has no messages to record."""
    return list


def record_embeddings(call: Call, result: Any) -> None:
    data = getattr(result, "data", None) or ()
    dims: int | None = None
    if data:
        vector = getattr(data[0], "embedding", None)
        if isinstance(vector, str):  # encoding_format="base64": float32 bytes
            dims = (len(vector) * 3 // 4 - vector[-2:].count("=")) // 4
        elif vector is not None:
            dims = len(vector)
    call.gfc.record(
        Embedding(
            call.conv,
            call.key,
            model=getattr(result, "model", None) or call.model,
            count=len(data),
            dimensions=dims,
            usage=lazy_usage(getattr(result, "usage", None)),
            usage_kind="openai_embeddings",
            started_at=call.started,
            properties=call.properties(),
        )
    )

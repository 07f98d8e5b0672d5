"""The wire: builds and encodes ``POST /messages`` requests from mapped messages.

Sits between the recorder (which maps events to wire-form message dicts) and the
transport (which only batches and ships bytes). Here: JSON encoding (orjson), the
request envelope (identity, conversation ``properties`` masked like every other value,
the system prompt), the size rules (an oversize message is shrunk with a visible marker,
or dropped) and the join of a batch of encoded messages into one request body.
"""

from __future__ import annotations

import collections
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import orjson

from ..common.once import OnceLog
from ..transport.request import Part
from .context import Conv
from .masking import MaskFn
from .recorder import Outgoing
from .safejson import to_jsonable

log = logging.getLogger("gf_integrations")

MESSAGES_PATH = "/messages"

# A lone surrogate or a non-str key makes orjson refuse; the stdlib then takes over.
_FALLBACK = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode_json(value: Any) -> bytes:
    """Compact UTF-8 JSON. NaN/inf become ``null`` (never invalid JSON on the wire);
    lone surrogates (invalid UTF-8) become U+FFFD, never an error."""
    try:
        # orjson (3.12+) hands back its working buffer, at least 4 KB whatever the length,
        # and never shrinks it: a ~300-byte message would hold 4 KB for as long as it waits
        # in a batch, the backlog or the envelope cache. An exact copy costs ~0.2 us.
        return bytes(memoryview(orjson.dumps(value)))
    except TypeError:  # orjson.JSONEncodeError: surrogates, non-str keys, unknown types
        text = _FALLBACK.encode(value)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def conversation_fields(conv: Conv, mask: MaskFn | None = None) -> dict[str, Any]:
    """Request-level wire fields for a conversation (without messages), masked."""
    body: dict[str, Any] = {
        "externalUserId": conv.external_user_id,
        "externalConversationId": conv.external_conversation_id,
    }
    if conv.product_id:
        body["productId"] = conv.product_id
    if conv.external_organization_id:
        body["externalOrganizationId"] = conv.external_organization_id
    if conv.properties:
        props = to_jsonable(dict(conv.properties))
        body["properties"] = _apply_mask(mask, props) if mask is not None else props
    if conv.force_sample:
        body["forceSample"] = True
    return body


def _apply_mask(mask: MaskFn, value: Any) -> Any:
    try:
        return mask(value)
    except Exception:
        log.warning("gf_integrations: mask function raised; field replaced by a placeholder")
        return {"masked": "[masking failed]"}


def shrink(message: Mapping[str, Any], limit: int) -> dict[str, Any]:
    """Cut the largest text fields of an oversize message, with a visible marker."""
    out = dict(message)
    budget = max(limit // 4, 256)
    for name in ("content", "context"):
        value = out.get(name)
        if isinstance(value, str) and len(value.encode("utf-8", "replace")) > budget:
            # characters can take up to 4 bytes: keep budget // 4 of them
            out[name] = value[: budget // 4] + f"…[truncated: message exceeded {limit} bytes]"
    for name in ("input", "output", "properties"):
        value = out.get(name)
        if value is not None and len(encode_json(value)) > budget:
            out[name] = {"truncated": f"[field exceeded {budget} bytes]"}
    return out


_ENVELOPE_CACHE = 512  # conversations whose encoded envelope is kept (one per open batch)


class MessageWire:
    """Turns mapped messages into transport :class:`Part` s for ``POST /messages``.

    Used under the uploader's mapping lock (one thread at a time). ``report(counter, n)``
    receives ``shrunk_oversize`` / ``dropped_oversize`` / ``failed_mapping`` counts.
    """

    def __init__(
        self,
        *,
        mask: MaskFn | None,
        max_message_bytes: int,
        report: Callable[[str, int], None],
    ) -> None:
        self.mask = mask
        self.max_message_bytes = max_message_bytes
        self.report = report
        self._envelopes: collections.OrderedDict[Any, bytes] = collections.OrderedDict()
        self._once = OnceLog()  # this wire's warnings, each said once

    def parts(self, outgoing: Iterable[Outgoing]) -> list[Part]:
        """Encode each message; an oversize one is shrunk, or dropped and counted."""
        out: list[Part] = []
        for item in outgoing:
            try:
                part = self._part(item)
            except Exception as exc:
                self.report("failed_mapping", 1)
                self._once.warn(
                    f"encode:{type(exc).__name__}",
                    f"gf_integrations: could not encode a message ({type(exc).__name__}); "
                    "it was skipped",
                )
                continue
            if part is not None:
                out.append(part)
        return out

    def _part(self, item: Outgoing) -> Part | None:
        limit = self.max_message_bytes
        encoded = encode_json(item.message)
        if len(encoded) > limit:
            encoded = encode_json(shrink(item.message, limit))
            kind = item.message.get("messageType") or item.message.get("role")
            if len(encoded) > limit:
                self.report("dropped_oversize", 1)
                self._once.warn(
                    "oversize",
                    f"gf_integrations: a message larger than {limit} bytes was dropped "
                    f"(type {kind})",
                )
                return None
            self.report("shrunk_oversize", 1)
            self._once.warn(
                "shrunk",
                f"gf_integrations: a message larger than {limit} bytes was cut down to fit "
                "(marked '[truncated: ...]')",
            )
        key = item.batch_key
        head = self._envelope(key, item.conv)
        prompt = item.system_prompt
        overhead = len(head) + 16  # ',"messages":[' + ']}'
        if prompt is not None:
            overhead += len(encode_json(prompt)) + 16
        # meta: the envelope (shared by the conversation's parts) and the prompt, if any
        return Part(
            MESSAGES_PATH, encoded, key, join_messages, overhead=overhead, meta=(head, prompt)
        )

    def _envelope(self, key: Any, conv: Conv) -> bytes:
        head = self._envelopes.get(key)
        if head is None:
            head = self._envelopes[key] = encode_json(conversation_fields(conv, self.mask))
            if len(self._envelopes) > _ENVELOPE_CACHE:
                self._envelopes.popitem(last=False)
        return head


def join_messages(parts: Sequence[Part]) -> bytes:
    """One ``POST /messages`` body: the envelope, the latest system prompt, the messages."""
    head, prompt = parts[-1].meta
    for part in parts:
        if part.meta[1] is not None:
            prompt = part.meta[1]
    tail = head[:-1]
    if prompt is not None:
        tail += b',"systemPrompt":' + encode_json(prompt)
    return b"".join((tail, b',"messages":[', b",".join(p.data for p in parts), b"]}"))

"""Span attributes and span events -> neutral chat messages (runs on the worker).

Two conventions are read:

* GenAI semantic conventions: ``gen_ai.system_instructions``, ``gen_ai.input.messages`` and
  ``gen_ai.output.messages`` hold JSON lists of ``{"role", "parts": [...]}`` messages; the
  older form puts one span event per message (``gen_ai.system.message``,
  ``gen_ai.user.message``, ``gen_ai.assistant.message``, ``gen_ai.tool.message``,
  ``gen_ai.choice``).
* OpenInference: flattened ``llm.input_messages.N.message.*`` /
  ``llm.output_messages.N.message.*`` attributes.

Everything here takes plain values copied from a finished span and never raises for
malformed input: unknown shapes become text or are skipped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from ..core.events import ChatMessage, ToolCallSpec
from ..kit import warn_once

log = logging.getLogger("gf_integrations")


def bridge_failed(where: str, detail: BaseException | str) -> None:
    """Our own failure or an unreadable span, at ``where``: one warning per site."""
    # an exception's text may quote the traced program's data: its type only
    if not isinstance(detail, str):
        detail = type(detail).__name__
    warn_once(
        ("otel", where),
        "gf_integrations: OpenTelemetry bridge failed in %s (%s); the traced code is "
        "unaffected, further errors here are not logged",
        where,
        detail,
    )


# Media parts stand in as a placeholder, as in the other integrations.
_MEDIA_PARTS = {
    "blob": "[file]",
    "uri": "[file]",
    "file": "[file]",
    "image": "[image]",
    "image_url": "[image]",
    "audio": "[audio]",
    "video": "[video]",
}
_REASONING_PARTS = frozenset({"reasoning", "thinking"})


def parse_json(raw: Any) -> Any:
    """A JSON-looking string parsed, anything else returned as it is.

    The one place that decodes attribute values (tool arguments and results, message
    lists), so it can be swapped for the shared core helper.
    """
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    if not text or text[0] not in '[{"':
        return raw
    try:
        return json.loads(text)
    except ValueError:
        return raw


def _arguments(raw: Any) -> Any:
    """Tool-call arguments as an object when they are JSON, else kept as given."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    return parse_json(raw)


def as_text(value: Any) -> str | None:
    """A value as text: strings as they are, anything else as JSON."""
    if value is None or isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


# -- GenAI semantic conventions ---------------------------------------------------------------


def _genai_parts(parts: Any) -> tuple[list[str], list[ToolCallSpec], list[ChatMessage], list[str]]:
    """(texts, tool calls, tool responses, reasoning) of a GenAI ``parts`` list."""
    texts: list[str] = []
    calls: list[ToolCallSpec] = []
    responses: list[ChatMessage] = []
    reasoning: list[str] = []
    if isinstance(parts, str):
        return [parts], calls, responses, reasoning
    for part in parts if isinstance(parts, list) else ():
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if kind == "text":
            texts.append(str(part.get("content") or ""))
        elif kind == "tool_call":
            calls.append(
                {
                    "id": part.get("id"),
                    "name": str(part.get("name") or "unknown_tool"),
                    "arguments": _arguments(part.get("arguments")),
                }
            )
        elif kind == "tool_call_response":
            result = part.get("response", part.get("result"))
            responses.append(
                {
                    "role": "tool",
                    "content": as_text(result),
                    "tool_call_id": part.get("id"),
                    "name": part.get("name"),
                }
            )
        elif kind in _REASONING_PARTS:
            if part.get("content"):
                reasoning.append(str(part["content"]))
        elif kind in _MEDIA_PARTS:
            modality = part.get("modality")
            texts.append(f"[{modality}]" if isinstance(modality, str) else _MEDIA_PARTS[kind])
        elif isinstance(part.get("content"), str):
            texts.append(part["content"])
    return texts, calls, responses, reasoning


def _genai_message(raw: Any) -> list[ChatMessage]:
    """One GenAI message -> neutral messages (a user message carrying tool results becomes
    one tool message per result, then the user's own text if any)."""
    if not isinstance(raw, Mapping):
        return []
    role = str(raw.get("role") or "user")
    texts, calls, responses, reasoning = _genai_parts(raw.get("parts"))
    text = "\n".join(texts) if texts else None
    if role in ("system", "developer"):
        return [{"role": "system", "content": text}] if text else []
    if role == "assistant":
        msg: ChatMessage = {"role": "assistant", "content": text}
        if calls:
            msg["tool_calls"] = calls
        if reasoning:
            msg["reasoning"] = "\n\n".join(reasoning)
        if text is None and not calls and not reasoning:
            return []
        return [msg]
    out: list[ChatMessage] = list(responses)
    if role == "tool" and text is not None and not responses:
        out.append({"role": "tool", "content": text})
    elif text is not None and role != "tool":
        out.append({"role": "user", "content": text})
    return out


def genai_messages(raw: Any) -> list[ChatMessage]:
    """A ``gen_ai.input.messages`` / ``gen_ai.output.messages`` value -> neutral messages."""
    value = parse_json(raw)
    if isinstance(value, str) and value.strip():
        bridge_failed(
            "reading gen_ai messages",
            "a message list is not valid JSON, its messages are not recorded; is it cut "
            "by OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT?",
        )
    out: list[ChatMessage] = []
    for item in value if isinstance(value, list) else ():
        out.extend(_genai_message(item))
    return out


def genai_instructions(raw: Any) -> str | None:
    """``gen_ai.system_instructions`` (a JSON list of parts, or plain text) -> text."""
    value = parse_json(raw)
    if isinstance(value, str):
        return value or None
    texts, _, _, _ = _genai_parts(value)
    return "\n".join(texts) or None


# -- older per-message span events -------------------------------------------------------------


def _event_content(raw: Any) -> str | None:
    """An event's ``content``: text, or JSON text/blocks from some SDKs."""
    value = parse_json(raw)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for block in value:
            if isinstance(block, str):
                texts.append(block)
            elif isinstance(block, Mapping):
                text = block.get("text", block.get("content"))
                if isinstance(text, str):
                    texts.append(text)
        return "\n".join(texts)
    return as_text(value)


def _event_tool_calls(raw: Any) -> list[ToolCallSpec]:
    calls: list[ToolCallSpec] = []
    value = parse_json(raw)
    for call in value if isinstance(value, list) else ():
        if not isinstance(call, Mapping):
            continue
        fn = call.get("function")
        fn = fn if isinstance(fn, Mapping) else call
        calls.append(
            {
                "id": call.get("id"),
                "name": str(fn.get("name") or "unknown_tool"),
                "arguments": _arguments(fn.get("arguments")),
            }
        )
    return calls


def _event_message(role: str, attrs: Mapping[str, Any]) -> ChatMessage | None:
    if role == "assistant":
        msg: ChatMessage = {"role": "assistant", "content": _event_content(attrs.get("content"))}
        calls = _event_tool_calls(attrs.get("tool_calls"))
        if calls:
            msg["tool_calls"] = calls
        return msg
    if role == "tool":
        return {
            "role": "tool",
            "content": _event_content(attrs.get("content")),
            "tool_call_id": attrs.get("id") or attrs.get("tool_call_id"),
        }
    return {"role": role, "content": _event_content(attrs.get("content"))}


_EVENT_ROLES = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}


def event_messages(
    events: Sequence[tuple[str, Mapping[str, Any]]],
) -> tuple[list[ChatMessage], ChatMessage | None]:
    """(input messages, reply) from per-message span events."""
    inputs: list[ChatMessage] = []
    reply: ChatMessage | None = None
    for name, attrs in events:
        role = _EVENT_ROLES.get(name)
        if role is not None:
            msg = _event_message(role, attrs)
            if msg is not None:
                inputs.append(msg)
        elif name == "gen_ai.choice" and reply is None:
            index = attrs.get("index", 0)
            if index not in (0, "0"):
                continue
            message = parse_json(attrs.get("message"))
            if isinstance(message, Mapping):
                reply = _event_message("assistant", message)
            elif attrs.get("content") is not None or attrs.get("tool_calls") is not None:
                reply = _event_message("assistant", attrs)
    return inputs, reply


# -- OpenInference ------------------------------------------------------------------------------


def _indexed(attrs: Mapping[str, Any], prefix: str) -> dict[int, dict[str, Any]]:
    """``prefix.N.rest`` attributes grouped by N (``rest`` kept flat)."""
    groups: dict[int, dict[str, Any]] = {}
    cut = len(prefix) + 1
    for key, value in attrs.items():
        if not key.startswith(prefix) or len(key) <= cut or key[cut - 1] != ".":
            continue
        index, _, rest = key[cut:].partition(".")
        if index.isdigit() and rest:
            groups.setdefault(int(index), {})[rest] = value
    return groups


def _oi_message(flat: Mapping[str, Any]) -> ChatMessage | None:
    role = str(flat.get("message.role") or "user")
    content = flat.get("message.content")
    if content is None:
        parts = _indexed(flat, "message.contents")
        texts = [
            str(p.get("message_content.text"))
            for _, p in sorted(parts.items())
            if p.get("message_content.type", "text") == "text"
            and p.get("message_content.text") is not None
        ]
        content = "\n".join(texts) if texts else None
    calls: list[ToolCallSpec] = [
        {
            "id": c.get("tool_call.id"),
            "name": str(c.get("tool_call.function.name") or "unknown_tool"),
            "arguments": _arguments(c.get("tool_call.function.arguments")),
        }
        for _, c in sorted(_indexed(flat, "message.tool_calls").items())
    ]
    if role in ("system", "developer"):
        return {"role": "system", "content": as_text(content)}
    if role in ("assistant", "model"):
        msg: ChatMessage = {"role": "assistant", "content": as_text(content)}
        if calls:
            msg["tool_calls"] = calls
        return msg
    if role in ("tool", "function"):
        return {
            "role": "tool",
            "content": as_text(content),
            "tool_call_id": flat.get("message.tool_call_id"),
            "name": flat.get("message.name"),
        }
    return {"role": "user", "content": as_text(content)}


def openinference_messages(attrs: Mapping[str, Any], prefix: str) -> list[ChatMessage]:
    """``llm.input_messages`` / ``llm.output_messages`` -> neutral messages."""
    out: list[ChatMessage] = []
    for _, flat in sorted(_indexed(attrs, prefix).items()):
        msg = _oi_message(flat)
        if msg is not None:
            out.append(msg)
    return out


def first_reply(messages: Sequence[ChatMessage]) -> ChatMessage | None:
    """The first assistant message of an output list (the reply; other choices dropped)."""
    for msg in messages:
        if msg.get("role") == "assistant":
            return msg
    return None

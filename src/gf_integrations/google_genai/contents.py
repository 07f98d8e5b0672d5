"""Gemini ``contents`` and replies as neutral messages; runs on the worker, never on the
caller's thread.

Everything here reads both shapes the SDK accepts: its pydantic types (snake_case
attributes) and plain dicts (snake_case or the REST API's camelCase keys). A part of no
known kind is kept visibly marked (``[unsupported part] {...}`` with its JSON), never
guessed; media become placeholders; thought signatures are never read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..core.events import ChatMessage, ToolCallSpec

#: how much of an unknown part's JSON is kept in its marker
UNKNOWN_CHARS = 1000


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.title() for w in rest)


def field(obj: Any, name: str) -> Any:
    """``obj.name`` of an SDK type, or ``obj[name]`` / ``obj[camelName]`` of a dict."""
    if isinstance(obj, Mapping):
        value = obj.get(name)
        return obj.get(_camel(name)) if value is None else value
    return getattr(obj, name, None)


# -- contents -------------------------------------------------------------------------


def _is_content(item: Any) -> bool:
    if isinstance(item, Mapping):
        return "parts" in item or "role" in item
    return hasattr(item, "parts") and hasattr(item, "role")


def _is_function_call(part: Any) -> bool:
    return not isinstance(part, (str, bytes)) and field(part, "function_call") is not None


def as_contents(value: Any) -> list[tuple[str, list[Any]]]:
    """``contents`` as the SDK reads it: ``(role, parts)`` turns.

    A string or a part is one user turn; in a list, each content is a turn and each run
    of bare parts one turn (the model's when they are all function calls).
    """
    if value is None:
        return []
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    out: list[tuple[str, list[Any]]] = []
    run: list[Any] = []

    def flush() -> None:
        if run:
            role = "model" if all(_is_function_call(p) for p in run) else "user"
            out.append((role, list(run)))
            run.clear()

    for item in items:
        if _is_content(item):
            flush()
            parts = field(item, "parts")
            if parts is None:
                parts = []
            elif not isinstance(parts, (list, tuple)):
                parts = [parts]
            out.append((str(field(item, "role") or "user"), list(parts)))
        else:
            run.append(item)
    flush()
    return out


def instruction_text(value: Any) -> str:
    """``system_instruction`` (a string, part(s) or a content) as one text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    texts: list[str] = []
    for _, parts in as_contents(value):
        for part in parts:
            kind, data = read_part(part)
            if kind in ("text", "media", "unknown"):
                texts.append(data)
    return "\n".join(texts)


# -- parts ----------------------------------------------------------------------------

_MEDIA = {"image": "[image]", "audio": "[audio]", "video": "[video]"}


def _media(mime: Any) -> str:
    major = mime.split("/", 1)[0] if isinstance(mime, str) else ""
    return _MEDIA.get(major, "[file]")


def _unknown(part: Any) -> str:
    """A part we cannot read, kept visibly marked with its JSON (bounded)."""
    try:
        if isinstance(part, Mapping):
            data: Any = {
                k: v for k, v in part.items() if k not in ("thought_signature", "thoughtSignature")
            }
        else:
            dump = getattr(part, "model_dump", None)
            if callable(dump):
                data = dump(mode="json", exclude_none=True, exclude={"thought_signature"})
            else:
                data = {"type": type(part).__name__}
        text = json.dumps(data, default=lambda o: type(o).__name__, sort_keys=True)
    except Exception:
        text = json.dumps({"type": type(part).__name__})
    if len(text) > UNKNOWN_CHARS:
        text = text[:UNKNOWN_CHARS] + "..."
    return f"[unsupported part] {text}"


def read_part(part: Any) -> tuple[str, Any]:
    """``(kind, data)`` of one part: text, thought, call, response, media, skip, unknown."""
    if isinstance(part, str):
        return "text", part
    if isinstance(part, (bytes, bytearray)):
        return "media", "[file]"
    call = field(part, "function_call")
    if call is not None:
        return "call", call
    response = field(part, "function_response")
    if response is not None:
        return "response", response
    text = field(part, "text")
    if isinstance(text, str):
        return ("thought" if field(part, "thought") is True else "text"), text
    inline = field(part, "inline_data")
    if inline is not None:
        return "media", _media(field(inline, "mime_type"))
    if field(part, "file_data") is not None:
        return "media", _media(field(field(part, "file_data"), "mime_type"))
    code = field(part, "executable_code")
    if code is not None:
        return (
            "text",
            f"```{str(field(code, 'language') or '').lower()}\n{field(code, 'code')}\n```",
        )
    result = field(part, "code_execution_result")
    if result is not None:
        return "text", f"```\n{field(result, 'output') or ''}\n```"
    if isinstance(part, Mapping) or hasattr(part, "model_dump"):
        if field(part, "thought_signature") is not None and not _extra_fields(part):
            return "skip", None  # a signature alone: opaque, never sent
        return "unknown", _unknown(part)
    if hasattr(part, "uri") and hasattr(part, "mime_type"):  # an uploaded types.File
        return "media", _media(getattr(part, "mime_type", None))
    if "image" in type(part).__name__.lower():  # a PIL image
        return "media", "[image]"
    return "unknown", _unknown(part)


def _extra_fields(part: Any) -> bool:
    """Whether a part has more than a thought signature (and the ``thought`` flag)."""
    if isinstance(part, Mapping):
        keys = set(part) - {"thought_signature", "thoughtSignature", "thought"}
        return bool(keys)
    dump = getattr(part, "model_dump", None)
    data = dump(exclude_none=True) if callable(dump) else {}
    return bool(set(data) - {"thought_signature", "thought"})


def _response_text(response: Any) -> tuple[str | None, bool]:
    """A function response's output as text, and whether it reports an error.

    The SDK's automatic function calling answers ``{"result": ...}`` or ``{"error": ...}``;
    the API documents ``output`` / ``error``.
    """
    data = field(response, "response")
    if isinstance(data, Mapping):
        keys = set(data)
        if keys == {"error"}:
            return _text_of(data["error"]), True
        if len(keys) == 1 and keys & {"result", "output"}:
            return _text_of(next(iter(data.values()))), False
    return _text_of(data), False


def _text_of(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str, ensure_ascii=False)
    except Exception:
        return str(value)


# -- turns ----------------------------------------------------------------------------


class _Calls:
    """Function call ids across turns: the native id when the API gave one, else one
    made from the turn's position (stable as the history grows); a response without an
    id answers the oldest open call of its name, as the API pairs them."""

    __slots__ = ("open",)

    def __init__(self) -> None:
        self.open: dict[str, list[str]] = {}

    def call(self, call: Any, turn: int, n: int) -> ToolCallSpec:
        name = str(field(call, "name") or "unknown_tool")
        native = field(call, "id")
        args = field(call, "args") or {}
        if isinstance(native, str) and native:
            call_id = native
        else:
            # the turn's position, and the call itself: two tool loops under one fixed
            # conversation id do not share ids
            digest = hashlib.sha1(
                f"{name}\x1f{_text_of(args)}".encode("utf-8", "surrogatepass")
            ).hexdigest()[:12]
            call_id = f"gemini-{turn}-{n}-{digest}"
        self.open.setdefault(name, []).append(call_id)
        return {"id": call_id, "name": name, "arguments": args}

    def answer(self, response: Any) -> tuple[str | None, str]:
        name = str(field(response, "name") or "unknown_tool")
        waiting = self.open.get(name) or []
        native = field(response, "id")
        if isinstance(native, str) and native:
            if native in waiting:
                waiting.remove(native)
            return native, name
        return (waiting.pop(0) if waiting else None), name


def model_message(parts: Sequence[Any], turn: int, calls: _Calls) -> ChatMessage:
    """A model turn as one assistant message: text, thoughts (reasoning), function calls."""
    texts: list[str] = []
    thoughts: list[str] = []
    specs: list[ToolCallSpec] = []
    for part in parts:
        kind, data = read_part(part)
        if kind in ("text", "media", "unknown"):
            texts.append(data)
        elif kind == "thought":
            thoughts.append(data)
        elif kind == "call":
            specs.append(calls.call(data, turn, len(specs)))
        # a function response in a model turn, or a lone signature: nothing to say
    msg: ChatMessage = {"role": "assistant", "content": "".join(texts) if texts else None}
    if specs:
        msg["tool_calls"] = specs
    if any(thoughts):
        msg["reasoning"] = "".join(thoughts)
    return msg


def _user_turn(parts: Sequence[Any], calls: _Calls, out: list[ChatMessage]) -> None:
    """A user turn: its function responses become tool messages, the rest the user's."""
    texts: list[str] = []
    answered = False
    for part in parts:
        kind, data = read_part(part)
        if kind == "response":
            answered = True
            call_id, name = calls.answer(data)
            content, failed = _response_text(data)
            out.append(
                {
                    "role": "tool",
                    "content": content,
                    "tool_call_id": call_id,
                    "name": name,
                    "status": "error" if failed else None,
                }
            )
        elif kind in ("text", "thought", "media", "unknown"):
            texts.append(data)
    if texts or not answered:
        out.append({"role": "user", "content": "\n".join(texts)})


def _turns(contents: Any) -> list[tuple[str, list[Any]]]:
    """Turns with consecutive model turns merged: a streamed reply comes back as one
    model content per chunk."""
    merged: list[tuple[str, list[Any]]] = []
    for role, parts in as_contents(contents):
        if role == "model" and merged and merged[-1][0] == "model":
            merged[-1][1].extend(parts)
        else:
            merged.append((role, list(parts)))
    return merged


def request_messages(
    system: Any, contents: Any, reply: Sequence[Any] | None = None
) -> tuple[list[ChatMessage], ChatMessage | None]:
    """The request's messages (system prompt first) and, given the reply's parts, the reply.

    Call ids count turns in the raw contents, so the reply's calls get the ids they have
    when the next request resends the reply as history.
    """
    out: list[ChatMessage] = []
    text = instruction_text(system)
    if text:
        out.append({"role": "system", "content": text})
    calls = _Calls()
    index = 0
    for role, parts in _turns(contents):
        if role == "model":
            out.append(model_message(parts, index, calls))
        else:
            _user_turn(parts, calls, out)
        index += 1
    if reply is None:
        return out, None
    return out, model_message(reply, index, calls)


def opening(system: Any, contents: Any) -> tuple[str, str]:
    """(system prompt, first user message) for a derived conversation id."""
    for role, parts in as_contents(contents):
        if role == "user":
            texts = [d for k, d in map(read_part, parts) if k in ("text", "media", "unknown")]
            if texts:
                return instruction_text(system), "\n".join(texts)
    return instruction_text(system), ""

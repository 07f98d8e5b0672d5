"""``invoke_model`` / ``invoke_model_with_response_stream``: the model's own body formats.

Known formats: Anthropic Claude messages (an ``anthropic_version`` body), Amazon Nova
(``messages`` + ``inferenceConfig`` or ``schemaVersion``: the Converse shape) and Meta Llama
(a ``prompt`` body answered with ``generation``). Any other body is recorded verbatim (the
request as the user's message, the response as the reply) with
``properties.unknownBodyFormat: true``, never guessed at.

On the caller's thread only the request bytes are kept, and a format hint taken by looking
for JSON string tokens in them (``"anthropic_version"`` matches a key or a value, never
text inside a string, where a quote is escaped): it names the usage's shape
(``LLMCall.usage_kind``), the one field an event cannot compute later. Everything else is
decoded once, on the worker, and a body that does not match its hint loses its usage
rather than have it read in the wrong shape.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from botocore.response import StreamingBody

from ..core.events import ChatMessage, LLMCall
from ..kit import anthropic_format as claude
from ..kit import record_failure
from . import converse
from .call import Call, log_failure, remember_answer, request_id
from .stream import BedrockStreamTap

CLAUDE, NOVA, LLAMA = "claude", "nova", "llama"
#: the ``usage_kind`` of each body format's own usage
USAGE_KINDS = {CLAUDE: "anthropic", NOVA: "bedrock_nova", LLAMA: "bedrock_llama"}
_NOT_JSON = object()


def snapshot_body(body: Any) -> bytes | str | None:
    """The request body as the SDK will send it (a seekable file is read and put back)."""
    if isinstance(body, (bytes, str)):
        return body
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    try:
        if callable(getattr(body, "read", None)) and body.seekable():
            position = body.tell()
            data = body.read()
            body.seek(position)
            return data if isinstance(data, (bytes, str)) else None
    except Exception:
        pass
    return None  # not readable without taking it from the SDK: recorded as unknown


def _has(body: bytes | str, token: str) -> bool:
    return (token in body) if isinstance(body, str) else (token.encode() in body)


def format_hint(body: bytes | str | None) -> str | None:
    """The body format its JSON string tokens point to (a substring search, no parse)."""
    if not body:
        return None
    if _has(body, '"anthropic_version"'):
        return CLAUDE
    if _has(body, '"schemaVersion"') or (
        _has(body, '"messages"') and _has(body, '"inferenceConfig"')
    ):
        return NOVA
    if _has(body, '"prompt"'):
        return LLAMA
    return None


def _json(raw: Any) -> Any:
    try:
        return json.loads(raw)
    except Exception:
        return _NOT_JSON


def _text(raw: Any) -> str | None:
    if isinstance(raw, (bytes, bytearray)):
        return bytes(raw).decode("utf-8", "replace")
    return raw if isinstance(raw, str) else None


def classify(request: Any, first: Any) -> str | None:
    """The body format of a request and its (first) response object, or None."""
    if not isinstance(request, Mapping):
        return None
    if "anthropic_version" in request:
        return CLAUDE
    if "schemaVersion" in request or ("messages" in request and "inferenceConfig" in request):
        return NOVA
    if isinstance(request.get("prompt"), str) and isinstance(first, Mapping):
        if "generation" in first:
            return LLAMA
    return None


class Invocation:
    """An invoke call's request: its bytes, its hint, and its JSON parsed once."""

    __slots__ = ("_parsed", "hint", "raw")

    def __init__(self, raw: bytes | str | None) -> None:
        self.raw = raw
        self.hint = format_hint(raw)
        self._parsed: Any = None

    def request(self) -> Any:
        if self._parsed is None:
            self._parsed = _json(self.raw) if self.raw is not None else _NOT_JSON
        return self._parsed

    def opening(self) -> tuple[str, str]:
        """(system prompt, first user message) for a derived conversation id: called on the
        caller's thread only when no conversation id is given."""
        req = self.request()
        if isinstance(req, Mapping):
            if "anthropic_version" in req:
                return claude.opening(req.get("system"), req.get("messages") or [])
            if isinstance(req.get("messages"), list):
                return converse.opening(req.get("system"), req["messages"])
            if isinstance(req.get("prompt"), str):
                return "", req["prompt"]
        return "", _text(self.raw) or ""

    def messages(self, fmt: str | None) -> list[ChatMessage]:
        req = self.request()
        if fmt == CLAUDE:
            return claude.inputs(req.get("system"), req.get("messages") or [])
        if fmt == NOVA:
            return converse.inputs(req.get("system"), req.get("messages") or [])
        if fmt == LLAMA:
            return [{"role": "user", "content": req["prompt"]}]
        text = _text(self.raw)
        return [{"role": "user", "content": text}] if text else []


class Reading:
    """One invoke call's response decoded once, on the worker, for every lazy field of its
    event (messages, reply, usage, properties)."""

    __slots__ = ("_done", "extra", "fmt", "inv", "messages", "reply", "source", "stream", "usage")

    def __init__(self, inv: Invocation, source: Any, stream: bool) -> None:
        self.inv = inv
        self.source = source  # the body's bytes, or the stream's events
        self.stream = stream
        self._done = False
        self.fmt: str | None = None
        self.messages: list[ChatMessage] = []
        self.reply: ChatMessage | None = None
        self.usage: Any = None
        self.extra: dict[str, Any] = {}

    def get(self) -> Reading:
        if not self._done:
            self._done = True
            try:
                self._decode()
            except Exception as exc:  # a body that surprised us: kept verbatim, marked
                log_failure("decoding a model body", exc)
                self._verbatim(self._chunks() if self.stream else [])
        return self

    def get_messages(self) -> list[ChatMessage]:
        return self.get().messages

    def get_reply(self) -> ChatMessage | None:
        return self.get().reply

    def get_usage(self) -> Any:
        r = self.get()
        # the hint named the usage's shape; a body of another format keeps no usage
        return r.usage if r.fmt is not None and r.fmt == r.inv.hint else None

    def _chunks(self) -> list[bytes]:
        out = []
        for event in self.source:
            chunk = event.get("chunk") if isinstance(event, Mapping) else None
            data = chunk.get("bytes") if isinstance(chunk, Mapping) else None
            if isinstance(data, (bytes, str)):
                out.append(data if isinstance(data, bytes) else data.encode())
        return out

    def _decode(self) -> None:
        if self.stream:
            chunks = self._chunks()
            objs = [_json(c) for c in chunks]
            first = objs[0] if objs else None
            self.fmt = classify(self.inv.request(), first)
            if self.fmt is None or any(o is _NOT_JSON for o in objs):
                self._verbatim(chunks)
                return
            self._stream(objs)
        elif self.source is None:  # the call failed: only the request is known
            self.fmt = classify(self.inv.request(), None)
        else:
            body = _json(self.source)
            self.fmt = classify(self.inv.request(), body)
            if self.fmt is None or not isinstance(body, Mapping):
                self._verbatim([self.source] if self.source is not None else [])
                return
            self._body(body)
        self.messages = self.inv.messages(self.fmt)
        self.extra["bodyFormat"] = self.fmt

    def _verbatim(self, chunks: Sequence[Any]) -> None:
        self.fmt = None
        self.messages = self.inv.messages(None)
        texts = [t for t in (_text(c) for c in chunks) if t is not None]
        self.reply = {"role": "assistant", "content": "\n".join(texts)} if texts else None
        self.usage = None
        self.extra = {"unknownBodyFormat": True}

    def _body(self, body: Mapping[str, Any]) -> None:
        if self.fmt == CLAUDE:
            self.reply = claude.assistant_reply(body.get("content"), None)
            self.usage = body.get("usage")
            stop = body.get("stop_reason")
        elif self.fmt == NOVA:
            self.reply = converse.output_reply(body.get("output"))
            self.usage = body.get("usage")
            stop = body.get("stopReason")
        else:
            self.reply = {"role": "assistant", "content": body.get("generation")}
            self.usage = _llama_usage([body])
            stop = body.get("stop_reason")
        if isinstance(stop, str):
            self.extra["finishReason"] = stop

    def _stream(self, objs: list[Any]) -> None:
        stop: Any = None
        if self.fmt == CLAUDE:
            self.reply = claude.stream_reply(objs)
            usage: dict[str, Any] = {}
            for obj in objs:
                kind = obj.get("type")
                if kind == "message_start":
                    usage.update((obj.get("message") or {}).get("usage") or {})
                elif kind == "message_delta":
                    usage.update(obj.get("usage") or {})
                    stop = (obj.get("delta") or {}).get("stop_reason") or stop
            self.usage = usage or None
        elif self.fmt == NOVA:
            self.reply = converse.stream_reply(objs)
            stop, self.usage, _ = converse.stream_end(objs)
        else:
            text = "".join(str(o.get("generation") or "") for o in objs)
            self.reply = {"role": "assistant", "content": text}
            self.usage = _llama_usage(objs)
            stops = [o.get("stop_reason") for o in objs if o.get("stop_reason")]
            stop = stops[-1] if stops else None
        if isinstance(stop, str):
            self.extra["finishReason"] = stop


def _llama_usage(objs: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Llama's token counts: the prompt's from the first object that has it, the
    generation's (cumulative in a stream) from the last."""
    usage: dict[str, Any] = {}
    for obj in objs:
        for key in ("prompt_token_count", "generation_token_count"):
            value = obj.get(key)
            if isinstance(value, int) and not (key == "prompt_token_count" and key in usage):
                usage[key] = value
    return usage or None


class LazyProperties(Mapping[str, Any]):
    """The event's properties: the call's, plus what only the decoded body tells
    (``bodyFormat`` or ``unknownBodyFormat``, ``finishReason``), read on the worker."""

    __slots__ = ("_base", "_data", "_reading")

    def __init__(self, base: dict[str, Any], reading: Reading) -> None:
        self._base = base
        self._reading = reading
        self._data: dict[str, Any] | None = None

    def _dict(self) -> dict[str, Any]:
        if self._data is None:
            self._data = {**self._base, **self._reading.get().extra}
        return self._data

    def __getitem__(self, key: str) -> Any:
        return self._dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict())

    def __len__(self) -> int:
        return len(self._dict())


# -- recording ----------------------------------------------------------------------------


def begin_invoke(call: Call, kwargs: dict[str, Any]) -> Callable[[], tuple[str, str]]:
    """Keep the request body; returns the opening for a derived conversation id."""
    call.invocation = inv = Invocation(snapshot_body(kwargs.get("body")))
    return inv.opening


def invoke_inputs(call: Call) -> Callable[[], list[ChatMessage]]:
    """The request's messages for a failed call (no response: Llama's is unknown too)."""
    inv: Invocation = call.invocation
    return lambda: Reading(inv, None, False).get_messages()


class _Failed(io.RawIOBase):
    """A body whose read raises what reading the real one raised: the caller sees the same
    failure, at the same step (``read``), as without us."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        raise self.error


def record_invoke(call: Call, response: Any) -> None:
    """Read the caller's ``StreamingBody`` and hand the caller a fresh one with the same
    bytes; record the call with the bytes, decoded later."""
    body = response.get("body")
    if not callable(getattr(body, "read", None)):
        log_failure("reading the response body", TypeError(type(body).__name__))
        return
    try:
        data = body.read()
    except Exception as exc:
        response["body"] = StreamingBody(_Failed(exc), None)
        record_failure(call, exc, invoke_inputs(call))
        return
    response["body"] = StreamingBody(io.BytesIO(data), len(data))
    rid = request_id(response)
    reading = Reading(call.invocation, data, False)
    _record(call, reading, rid, call.properties(rid))
    remember_answer(rid, call)


def _record(
    call: Call,
    reading: Reading,
    rid: str | None,
    props: dict[str, Any],
    error: BaseException | None = None,
    partial: bool = False,
) -> None:
    call.gfc.record(
        LLMCall(
            call.conv,
            call.key,
            messages=reading.get_messages,
            reply=reading.get_reply,
            model=call.model,
            usage=reading.get_usage,
            usage_kind=USAGE_KINDS.get(call.invocation.hint or ""),
            provider=call.cfg.provider,
            started_at=call.started,
            error=error,
            partial=partial,
            properties=LazyProperties(props, reading),
        )
    )


def record_invoke_stream(tap: BedrockStreamTap, how: str, error: BaseException | None) -> None:
    call, events = tap.call, tap.items
    if not events and error is not None:
        record_failure(call, error, invoke_inputs(call))
        return
    rid = tap.rid
    reading = Reading(call.invocation, list(events), True)
    complete = how == "exhausted" and error is None
    _record(call, reading, rid, tap.stream_props(how, rid), error, not complete)
    remember_answer(rid, call)

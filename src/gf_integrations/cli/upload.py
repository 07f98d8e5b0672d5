"""``gf-integrations upload``: import past conversations from a JSONL file.

Needs only the core package; works against Greenflash or a local collector.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

from pydantic import ValidationError

from ..core.context import Conv
from ..core.events import LLMCall
from ..core.ids import stable_id
from ..core.recorder import Mapper
from ..core.safejson import Limits
from ..core.settings import DEFAULT_BASE_URL, Settings, is_loopback_url
from ..kit.openai_format import chat_messages
from ..schema import MessageCreateRequest, dump_request
from ..transport.exporters import HTTPExporter
from ..transport.retry import backoff_delay


class _Progress:
    """A one-line progress bar on stderr (redrawn only on a terminal)."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = max(total, 1)
        self.stream = stream
        self.tty = stream.isatty()
        self.last = 0.0

    def note(self, message: str) -> None:
        """Print a message line without leaving a half-drawn bar behind."""
        self.stream.write(("\r\033[K" if self.tty else "") + message + "\n")
        self.stream.flush()

    def update(
        self, done: int, created: int, dedup: int, skipped: int, final: bool = False
    ) -> None:
        now = time.monotonic()
        if not final and (now - self.last < 0.1 or not self.tty):
            return
        self.last = now
        width = 30
        filled = int(width * done / self.total)
        bar = "#" * filled + "-" * (width - filled)
        line = (
            f"\r[{bar}] {done}/{self.total} lines  created {created}  "
            f"deduplicated {dedup}  skipped {skipped}"
        )
        self.stream.write(line + ("\n" if final else ""))
        self.stream.flush()


def _openai_line(obj: dict[str, Any], line_no: int, file_key: str) -> dict[str, Any]:
    """Turn ``{"messages": [...]}`` (OpenAI chat format) into one API request dict.

    The messages are read as the OpenAI wrapper reads them and mapped by the recorder, so
    an uploaded conversation has the shape a recorded one has (system prompt, tool calls
    with parsed arguments, observations under their call, deterministic ids).
    """
    msgs = obj.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise ValueError("messages: a non-empty list is required")
    for n, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise ValueError(f"messages.{n}: not an object")
        if m.get("role") not in _CHAT_ROLES:
            raise ValueError(f"messages.{n}.role: unsupported role {m.get('role')!r}")
    conv_id = (
        obj.get("externalConversationId")
        or obj.get("conversation_id")
        or obj.get("id")
        or stable_id("upload", json.dumps(msgs, sort_keys=True, ensure_ascii=False))
    )
    conv = Conv(str(conv_id), str(obj.get("externalUserId") or obj.get("user") or "upload"))
    started = _started_at(obj.get("createdAt") or obj.get("created_at"))
    out = Mapper(limits=Limits()).map(
        LLMCall(conv, "upload", messages=chat_messages(msgs), started_at=started, ended_at=started)
    )
    if not any(o.message.get("role") or o.message.get("messageType") for o in out):
        raise ValueError("messages: no user, assistant or tool message")
    req: dict[str, Any] = {
        "externalConversationId": conv.external_conversation_id,
        "externalUserId": conv.external_user_id,
        "messages": [o.message for o in out],
    }
    if out and out[0].system_prompt is not None:
        req["systemPrompt"] = out[0].system_prompt
    if obj.get("model"):
        req["model"] = str(obj["model"])
    if isinstance(obj.get("metadata"), dict):
        req["properties"] = obj["metadata"]
    return req


_CHAT_ROLES = frozenset(("system", "developer", "user", "assistant", "tool", "function"))


def _started_at(created: Any) -> dt.datetime:
    """The line's ``createdAt`` (ISO-8601) or ``created_at`` (epoch seconds), else now."""
    if isinstance(created, (int, float)) and not isinstance(created, bool):
        return dt.datetime.fromtimestamp(created, dt.timezone.utc)
    if isinstance(created, str):
        try:
            base = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("createdAt: not an ISO-8601 date-time") from None
        return base if base.tzinfo is not None else base.replace(tzinfo=dt.timezone.utc)
    return dt.datetime.now(dt.timezone.utc)


def parse_line(raw: str, line_no: int, file_key: str) -> MessageCreateRequest:
    """Parse one JSONL line (API request or OpenAI chat format) into a validated request.

    Messages without ``externalMessageId`` get one derived from the conversation, the
    file name, the line number and the message's position, so uploading the same file
    twice (or with lines appended) stores nothing twice.
    """
    obj = json.loads(raw)
    if not isinstance(obj, dict):
        raise ValueError("line is not a JSON object")
    if "externalUserId" not in obj and isinstance(obj.get("messages"), list):
        obj = _openai_line(obj, line_no, file_key)
    req = MessageCreateRequest.model_validate(obj)
    conv_key = req.conversation_id or req.external_conversation_id or f"{file_key}:{line_no}"
    if not (req.conversation_id or req.external_conversation_id):
        # productId-only lines would open a new conversation on every run
        req.external_conversation_id = stable_id("upload-conv", file_key, line_no)
        conv_key = req.external_conversation_id
    for n, m in enumerate(req.messages):
        if m.external_message_id is None:
            m.external_message_id = stable_id(
                "upload", req.product_id, conv_key, file_key, line_no, n, m.content
            )
    return req


def _chunks(req: MessageCreateRequest, size: int) -> Iterator[dict[str, Any]]:
    """Split a request into bodies of at most ``size`` messages (order kept)."""
    body = dump_request(req)
    msgs = body.pop("messages")
    for start in range(0, len(msgs), size):
        part = dict(body)
        part["messages"] = msgs[start : start + size]
        yield part


def _post(exporter: HTTPExporter, body: dict[str, Any], timeout: float, budget: float) -> Any:
    """POST with the uploader's retry policy (:func:`backoff_delay`) on retryable
    failures, within ``budget`` seconds; returns the ExportResult."""
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "surrogatepass"
    )
    deadline = time.monotonic() + budget
    attempt = 0
    while True:
        result = exporter.export(payload, timeout=timeout)
        if result.ok or not result.retryable:
            return result
        attempt += 1
        delay = backoff_delay(
            attempt, result.retry_after, Settings.max_backoff, Settings.max_retry_after
        )
        if time.monotonic() + delay > deadline:
            return result
        time.sleep(delay)  # retry backoff


def upload_file(
    path: str,
    *,
    base_url: str,
    api_key: str | None,
    batch_size: int = 100,
    err: TextIO | None = None,
    retry_budget: float = 60.0,
) -> dict[str, int]:
    """Upload a JSONL file; returns counts: created, deduplicated, skipped, failed, lines."""
    exporter = HTTPExporter(base_url, api_key, user_agent="gf-integrations-upload")
    counts = {"lines": 0, "created": 0, "deduplicated": 0, "skipped": 0, "failed": 0}
    file_key = os.path.basename(path)
    with open(path, encoding="utf-8", errors="surrogateescape") as fh:
        lines = fh.readlines()
    progress = _Progress(len(lines), err or sys.stderr)
    try:
        for line_no, raw in enumerate(lines, 1):
            counts["lines"] += 1
            if raw.strip():
                try:
                    req = parse_line(raw, line_no, file_key)
                except ValidationError as exc:
                    where = "; ".join(
                        f"{'.'.join(str(p) for p in e['loc']) or '(line)'}: {e['msg']}"
                        for e in exc.errors(include_url=False)[:5]
                    )
                    progress.note(f"line {line_no}: skipped: {where}")
                    counts["skipped"] += 1
                except (ValueError, TypeError, RecursionError) as exc:
                    progress.note(f"line {line_no}: skipped: {str(exc)[:200]}")
                    counts["skipped"] += 1
                else:
                    for body in _chunks(req, batch_size):
                        result = _post(exporter, body, 30.0, retry_budget)
                        if not result.ok:
                            progress.note(
                                f"line {line_no}: rejected ({result.status or 'no answer'}): "
                                f"{result.detail[:300]}"
                            )
                            counts["failed"] += 1
                            break
                        for m in (result.response or {}).get("messages") or []:
                            if m.get("status") == "deduplicated":
                                counts["deduplicated"] += 1
                            else:
                                counts["created"] += 1
            progress.update(line_no, counts["created"], counts["deduplicated"], counts["skipped"])
        progress.update(
            len(lines), counts["created"], counts["deduplicated"], counts["skipped"], final=True
        )
    finally:
        exporter.shutdown()
    return counts


def run(args: argparse.Namespace) -> int:
    """Upload one JSONL file; exit code 1 when the server rejected a line."""
    base = args.url or os.environ.get("GREENFLASH_BASE_URL") or DEFAULT_BASE_URL
    base = base.rstrip("/")
    key = args.api_key or os.environ.get("GREENFLASH_API_KEY") or None
    if not base.startswith(("http://", "https://")):
        print(f"gf-integrations upload: --url must be http(s), not {base!r}", file=sys.stderr)
        return 2
    if base.startswith("http://") and not is_loopback_url(base):
        print("gf-integrations upload: plain http only for loopback hosts", file=sys.stderr)
        return 2
    if not key and not is_loopback_url(base):
        print("gf-integrations upload: set GREENFLASH_API_KEY or --api-key", file=sys.stderr)
        return 2
    if not os.path.isfile(args.file):
        print(f"gf-integrations upload: no such file: {args.file}", file=sys.stderr)
        return 2
    counts = upload_file(args.file, base_url=base, api_key=key, batch_size=args.batch_size)
    print(
        f"uploaded {args.file}: {counts['created']} created, {counts['deduplicated']} "
        f"deduplicated, {counts['skipped']} line(s) skipped"
        + (f", {counts['failed']} line(s) rejected by the server" if counts["failed"] else "")
    )
    return 1 if counts["failed"] else 0

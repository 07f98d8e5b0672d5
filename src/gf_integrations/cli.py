"""The ``gf-integrations`` command: ``serve``, ``demo`` and ``upload``.

``serve`` and ``demo`` need the ``local`` extra (the collector); ``upload`` needs only
the core package and works against Greenflash or a collector.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

import httpx
from pydantic import ValidationError

from .core.ids import stable_id
from .core.safejson import tool_arguments
from .core.settings import DEFAULT_BASE_URL, ConfigurationError, is_loopback_url
from .schema import MessageCreateRequest, dump_request
from .transport.exporters import HTTPExporter

__all__ = ["main"]

DEFAULT_PORT = 8787


# -- serve ---------------------------------------------------------------------------------


def _cmd_serve(args: argparse.Namespace) -> int:
    from .collector import serve

    key = args.api_key or os.environ.get("GF_COLLECTOR_API_KEY") or None
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"gf-integrations collector on http://{shown}:{args.port}  (db: {args.db})")
    print(
        f"  API base: http://{shown}:{args.port}/api/v1"
        + ("  (Bearer key required)" if key else "")
    )
    if args.host not in ("127.0.0.1", "localhost", "::1") and not key:
        print("  warning: listening beyond loopback without --api-key", file=sys.stderr)
    sys.stdout.flush()
    serve(args.db, host=args.host, port=args.port, api_key=key)
    return 0


# -- demo ----------------------------------------------------------------------------------


def _record_demo(client: Any, run: str) -> list[str]:
    """Record a multi-turn chat and an agentic run through the core recorder."""
    from .core.events import (
        ChatMessage,
        LLMCall,
        Retrieval,
        SetSystemPrompt,
        SystemPrompt,
        ToolResult,
    )

    t0 = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=30)

    def at(seconds: float) -> dt.datetime:
        return t0 + dt.timedelta(seconds=seconds)

    chat_id, agent_id = f"demo-chat-{run}", f"demo-agent-{run}"
    chat = client.resolve(
        defaults=_identity(chat_id, "ada@example.com", "acme"),
        fallback_conversation_id=chat_id,
    )
    prompt = SystemPrompt(
        components=[
            {
                "content": "You are {{assistant_name}}, a concise travel assistant "
                "for {{company}}.",
                "name": "persona",
                "type": "system",
                "source": "customer",
                "external_component_id": "persona-v1",
            },
            {
                "content": "Answer in at most two sentences. Never invent prices.",
                "name": "guardrails",
                "type": "guardrail",
                "source": "customer",
            },
        ],
        variables={"assistant_name": "Skye", "company": "Acme Travel"},
        external_prompt_id="travel-assistant",
    )
    client.record(SetSystemPrompt(chat, prompt))
    u1: ChatMessage = {"role": "user", "content": "Hi! Is Lisbon nice in March?", "id": "u1"}
    a1: ChatMessage = {
        "role": "assistant",
        "content": "Yes: mild (around 18°C), fewer crowds and the jacarandas are about to bloom.",
        "id": "a1",
    }
    u2: ChatMessage = {"role": "user", "content": "And what should I pack?", "id": "u2"}
    a2: ChatMessage = {
        "role": "assistant",
        "content": "Layers, a light rain jacket and comfortable shoes for the hills.",
        "id": "a2",
    }
    usage = {"input_tokens": 42, "output_tokens": 19, "total_tokens": 61}
    client.record(
        LLMCall(
            chat,
            "turn-1",
            messages=[u1],
            reply=a1,
            model="gpt-4o-mini",
            usage=usage,
            started_at=at(0),
            ended_at=at(0.8),
        )
    )
    client.record(
        LLMCall(
            chat,
            "turn-2",
            messages=[u1, a1, u2],
            reply=a2,
            model="gpt-4o-mini",
            usage={"input_tokens": 77, "output_tokens": 15, "total_tokens": 92},
            started_at=at(5),
            ended_at=at(5.6),
        )
    )

    # The agent's prompt arrives as plain text; the collector matches it to the template
    # above and reports the detected variables (templateMatch).
    client.flush(5)
    sys_msg: ChatMessage = {
        "role": "system",
        "content": "You are Skye, a concise travel assistant for Acme Travel.\n\n"
        "Answer in at most two sentences. Never invent prices.",
    }
    agent = client.resolve(
        defaults=_identity(agent_id, "ada@example.com", "acme"),
        fallback_conversation_id=agent_id,
    )
    q: ChatMessage = {
        "role": "user",
        "content": "Book me a hotel in Lisbon near the river for 3 nights.",
        "id": "q",
    }
    calls: ChatMessage = {
        "role": "assistant",
        "content": "I'll check availability and the hotel policy.",
        "tool_calls": [
            {
                "id": "call-1",
                "name": "search_hotels",
                "arguments": {"city": "Lisbon", "near": "Tagus", "nights": 3},
            },
            {
                "id": "call-2",
                "name": "get_exchange_rate",
                "arguments": {"from": "EUR", "to": "USD"},
            },
        ],
    }
    client.record(
        LLMCall(
            agent,
            "plan",
            messages=[q],
            reply=calls,
            model="gpt-4o",
            usage={"input_tokens": 120, "output_tokens": 48},
            started_at=at(10),
            ended_at=at(11.2),
        )
    )
    client.record(
        ToolResult(
            agent,
            "t1",
            "search_hotels",
            "call-1",
            input={"city": "Lisbon", "near": "Tagus", "nights": 3},
            output={
                "hotels": [
                    {"name": "Riverside Lofts", "price_eur": 142},
                    {"name": "Casa do Tejo", "price_eur": 118},
                ]
            },
            started_at=at(11.3),
            at=at(11.9),
        )
    )
    client.record(
        ToolResult(
            agent,
            "t2",
            "get_exchange_rate",
            "call-2",
            input={"from": "EUR", "to": "USD"},
            error=TimeoutError("rates service did not answer in 2 s"),
            started_at=at(11.3),
            at=at(13.3),
        )
    )
    client.record(
        Retrieval(
            agent,
            "r1",
            "hotel booking cancellation policy",
            documents=[
                {
                    "id": "policy.md#cancel",
                    "score": 0.91,
                    "text": "Free cancellation up to 48 hours before check-in.",
                    "metadata": {"source": "policy.md"},
                },
                {
                    "id": "faq.md#deposit",
                    "score": 0.74,
                    "text": "A deposit of one night is charged at booking.",
                },
            ],
            retriever="policy-index",
            started_at=at(13.4),
            at=at(13.5),
        )
    )
    tool_msgs: list[ChatMessage] = [
        {
            "role": "tool",
            "content": "Riverside Lofts 142 EUR; Casa do Tejo 118 EUR",
            "tool_call_id": "call-1",
            "name": "search_hotels",
        },
        {
            "role": "tool",
            "content": "timeout",
            "tool_call_id": "call-2",
            "name": "get_exchange_rate",
            "status": "error",
        },
    ]
    final: ChatMessage = {
        "role": "assistant",
        "content": "Casa do Tejo has 3 nights by the river at 118 EUR/night, with free "
        "cancellation up to 48 h before check-in (one night's deposit). Shall I book it?",
    }
    client.record(
        LLMCall(
            agent,
            "answer",
            messages=[sys_msg, q, calls, *tool_msgs],
            reply=final,
            model="gpt-4o",
            usage={"input_tokens": 260, "output_tokens": 51},
            started_at=at(13.6),
            ended_at=at(15.0),
            final=True,
        )
    )
    return [chat_id, agent_id]


def _identity(conv_id: str, user: str, org: str) -> Any:
    from .core.context import IdentityDefaults

    return IdentityDefaults(
        external_conversation_id=conv_id, external_user_id=user, external_organization_id=org
    )


def _label(m: dict[str, Any]) -> str:
    kind = m.get("messageType") or "?"
    text = m.get("content")
    if kind in ("tool_call", "observation", "tool_error") and m.get("toolName"):
        kind = f"{kind} {m['toolName']}"
    if not text and m.get("input") is not None:
        text = json.dumps(m["input"], ensure_ascii=False)
    if not text and m.get("output") is not None:
        text = json.dumps(m["output"], ensure_ascii=False)
    if kind == "retrieval" and isinstance(m.get("output"), dict):
        docs = m["output"].get("documents") or []
        text = f"{text!s} -> {len(docs)} document(s)"
    text = " ".join(str(text or "").split())
    if len(text) > 72:
        text = text[:69] + "..."
    return f"{kind}: {text}"


def print_tree(conv: dict[str, Any], out: TextIO) -> None:
    """Print one conversation (from the read API) as an indented tree."""
    head = conv.get("externalConversationId") or conv["id"]
    msgs = conv.get("messages") or []

    def count(nodes: list[dict[str, Any]]) -> int:
        return sum(1 + count(n.get("children") or []) for n in nodes)

    print(f"{head}  (user {conv.get('externalUserId')}, {count(msgs)} messages)", file=out)
    prompt = conv.get("prompt")
    if prompt:
        names = ", ".join(
            c.get("name") or c.get("type") or "component" for c in prompt["components"]
        )
        line = f"  system prompt: {len(prompt['components'])} component(s) [{names}]"
        if conv.get("promptVariables"):
            line += " with " + ", ".join(f"{k}={v!r}" for k, v in conv["promptVariables"].items())
        print(line, file=out)

    def walk(nodes: list[dict[str, Any]], prefix: str) -> None:
        for i, n in enumerate(nodes):
            last = i == len(nodes) - 1
            print(f"{prefix}{'└─ ' if last else '├─ '}{_label(n)}", file=out)
            walk(n.get("children") or [], prefix + ("   " if last else "│  "))

    walk(msgs, "  ")


def _cmd_demo(args: argparse.Namespace) -> int:
    from .client import GreenflashClient

    out = sys.stdout
    collector = None
    if args.url:
        base = args.url.rstrip("/")
        if not base.endswith("/api/v1"):
            base += "/api/v1"
        viewer_url = base[: -len("/api/v1")]
    else:
        try:
            from .collector import start_collector
        except ImportError as exc:
            print(f"gf-integrations demo: {exc}", file=sys.stderr)
            return 2
        collector = start_collector(db_path=args.db, port=args.port or 0)
        base, viewer_url = collector.base_url, collector.url
    key = args.api_key
    try:
        client = GreenflashClient(
            base_url=base, api_key=key, flush_interval=0.05, external_user_id="demo-user"
        )
        run = dt.datetime.now(dt.timezone.utc).strftime("%H%M%S")
        ids = _record_demo(client, run)
        delivered = client.flush(10)
        stats = client.stats()
        client.shutdown(2)
        if not delivered or stats.get("dropped_fatal"):
            print(f"gf-integrations demo: delivery failed ({stats})", file=sys.stderr)
            return 1
        headers = {"authorization": f"Bearer {key}"} if key else {}
        with httpx.Client(base_url=base, headers=headers, timeout=10) as http:
            for ext in ids:
                conv = http.get(f"/conversations/{ext}").json()
                print_tree(conv, out)
                print(file=out)
        print(f"Stored {stats.get('sent', 0)} messages in {len(ids)} conversations.", file=out)
        print(f"Open the viewer: {viewer_url}/", file=out)
        out.flush()
        if args.serve and collector is not None:
            print("Serving until Ctrl-C ...", file=out)
            out.flush()
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        return 0
    finally:
        if collector is not None:
            collector.stop()


# -- upload --------------------------------------------------------------------------------


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
    """Turn ``{"messages": [...]}`` (OpenAI chat format) into one API request dict."""
    msgs = obj.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise ValueError("messages: a non-empty list is required")
    conv_id = (
        obj.get("externalConversationId")
        or obj.get("conversation_id")
        or obj.get("id")
        or stable_id("upload", json.dumps(msgs, sort_keys=True, ensure_ascii=False))
    )
    req: dict[str, Any] = {
        "externalConversationId": str(conv_id),
        "externalUserId": str(obj.get("externalUserId") or obj.get("user") or "upload"),
    }
    if obj.get("model"):
        req["model"] = str(obj["model"])
    if isinstance(obj.get("metadata"), dict):
        req["properties"] = obj["metadata"]
    out: list[dict[str, Any]] = []
    tool_call_ids: dict[str, str] = {}
    system_parts: list[str] = []
    created = obj.get("createdAt") or obj.get("created_at")
    for n, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise ValueError(f"messages.{n}: not an object")
        role = m.get("role")
        content = m.get("content")
        if isinstance(content, list):  # content parts: keep the text ones
            content = "".join(
                p.get("text", "")
                for p in content
                if isinstance(p, dict) and p.get("type") == "text"
            )
        if content is not None and not isinstance(content, str):
            content = json.dumps(content, ensure_ascii=False)
        mid = f"{conv_id}:{n}"
        item: dict[str, Any]
        if role in ("system", "developer"):
            system_parts.append(content or "")
            continue
        if role == "user":
            item = {"role": "user", "content": content or ""}
        elif role == "assistant":
            tcs = m.get("tool_calls") or []
            if content:
                item = {"role": "assistant", "content": content}
                out.append(_stamp(item, mid, created, n))
            for k, tc in enumerate(tcs):
                fn = tc.get("function") or {}
                tid = f"{mid}:tool:{k}"
                tool_call_ids[str(tc.get("id"))] = tid
                out.append(
                    _stamp(
                        {
                            "messageType": "tool_call",
                            "toolName": str(fn.get("name") or "tool"),
                            "input": tool_arguments(fn.get("arguments")),
                        },
                        tid,
                        created,
                        n,
                    )
                )
            continue
        elif role == "tool":
            item = {"messageType": "observation", "output": {"content": content}}
            parent = tool_call_ids.get(str(m.get("tool_call_id")))
            if parent:
                item["parentExternalMessageId"] = parent
            if m.get("name"):
                item["toolName"] = str(m["name"])
        else:
            raise ValueError(f"messages.{n}.role: unsupported role {role!r}")
        out.append(_stamp(item, mid, created, n))
    if system_parts:
        req["systemPrompt"] = "\n\n".join(system_parts)
    if not out:
        raise ValueError("messages: no user, assistant or tool message")
    req["messages"] = out
    return req


def _stamp(item: dict[str, Any], mid: str, created: Any, n: int) -> dict[str, Any]:
    item["externalMessageId"] = mid
    if isinstance(created, (int, float)):  # OpenAI style epoch seconds
        base = dt.datetime.fromtimestamp(created, dt.timezone.utc)
        item["createdAt"] = (base + dt.timedelta(milliseconds=n)).isoformat()
    elif isinstance(created, str):
        try:
            base = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("createdAt: not an ISO-8601 date-time") from None
        if base.tzinfo is None:
            base = base.replace(tzinfo=dt.timezone.utc)
        item["createdAt"] = (base + dt.timedelta(milliseconds=n)).isoformat()
    return item


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
    """POST with retries on retryable failures; returns the ExportResult."""
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
        delay = min(0.25 * 2**attempt, 5.0)
        if result.retry_after is not None:
            delay = max(delay, min(result.retry_after, 30.0))
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


def _cmd_upload(args: argparse.Namespace) -> int:
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


# -- entry point ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    p = argparse.ArgumentParser(
        prog="gf-integrations",
        description="Greenflash integrations: local collector, demo and historical upload.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the local Greenflash-compatible collector")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=DEFAULT_PORT)
    s.add_argument("--db", default="gf-collector.sqlite3", help="SQLite file (created if missing)")
    s.add_argument(
        "--api-key", default=None, help="require this Bearer key (or GF_COLLECTOR_API_KEY)"
    )
    s.set_defaults(func=_cmd_serve)

    d = sub.add_parser("demo", help="record a chat and an agent run into a collector and show them")
    d.add_argument("--url", default=None, help="send to this collector/API base instead")
    d.add_argument("--api-key", default=None)
    d.add_argument("--db", default=None, help="keep the embedded collector's data in this file")
    d.add_argument("--port", type=int, default=0, help="port of the embedded collector")
    d.add_argument("--serve", action="store_true", help="keep the embedded collector running")
    d.set_defaults(func=_cmd_demo)

    u = sub.add_parser("upload", help="import historical conversations from a JSONL file")
    u.add_argument("file")
    u.add_argument(
        "--url", default=None, help=f"API base (default $GREENFLASH_BASE_URL or {DEFAULT_BASE_URL})"
    )
    u.add_argument("--api-key", default=None, help="default $GREENFLASH_API_KEY")
    u.add_argument("--batch-size", type=int, default=100, help="messages per request (max 100)")
    u.set_defaults(func=_cmd_upload)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gf-integrations`` command."""
    args = build_parser().parse_args(argv)
    try:
        rc: int = args.func(args)
    except ConfigurationError as exc:
        print(f"gf-integrations: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return rc


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

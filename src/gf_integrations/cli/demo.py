"""``gf-integrations demo``: record a chat and an agent run, then print what was stored."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from typing import Any, TextIO

import httpx

from ..transcript import iter_tree, summary


def _record_demo(client: Any, run: str) -> list[str]:
    """Record a multi-turn chat and an agentic run through the core recorder."""
    from ..core.events import (
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
    from ..core.context import IdentityDefaults

    return IdentityDefaults(
        external_conversation_id=conv_id, external_user_id=user, external_organization_id=org
    )


def _label(m: dict[str, Any]) -> str:
    kind = m.get("messageType") or "?"
    if kind in ("tool_call", "observation", "tool_error") and m.get("toolName"):
        kind = f"{kind} {m['toolName']}"
    if kind == "retrieval" and isinstance(m.get("output"), dict):
        docs = m["output"].get("documents") or []
        return f"{kind}: {summary(m, 50)} -> {len(docs)} document(s)"
    return f"{kind}: {summary(m, 72)}"


def print_tree(conv: dict[str, Any], out: TextIO) -> None:
    """Print one conversation (from the read API, messages nested) as an indented tree."""
    head = conv.get("externalConversationId") or conv["id"]
    count = sum(1 for _ in iter_tree(conv.get("messages") or []))
    print(f"{head}  (user {conv.get('externalUserId')}, {count} messages)", file=out)
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

    walk(conv.get("messages") or [], "  ")


def run(args: argparse.Namespace) -> int:
    """Record the demo into the embedded (or a given) collector and print the trees."""
    from ..client import GreenflashClient

    out = sys.stdout
    collector = None
    if args.url:
        base = args.url.rstrip("/")
        if not base.endswith("/api/v1"):
            base += "/api/v1"
        viewer_url = base[: -len("/api/v1")]
    else:
        try:
            from ..collector import start_collector
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
        if collector is None or args.serve:
            print(f"Open the viewer: {viewer_url}/", file=out)
        else:  # the embedded collector stops with this command: no dead link
            print("Run `gf-integrations demo --serve` to browse them in the viewer.", file=out)
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

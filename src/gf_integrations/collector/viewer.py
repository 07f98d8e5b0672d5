"""Server-rendered HTML viewer: conversation list and a threaded transcript, with ratings
on the rated messages (or the conversation) and business events on its timeline; tokens
and estimated cost per model answer and per conversation.

No JavaScript and no build step. Every stored value goes through :func:`esc` (or
:func:`pretty_json`, which escapes too) before it reaches the page, so message content
is always shown as text, never interpreted as markup.
"""

from __future__ import annotations

import html
import json
import math
import re
from typing import Any

from ..transcript import iter_tree
from .store import Store

__all__ = ["esc", "render_page"]

#: Messages rendered per page; larger conversations are cut with a note.
MAX_RENDERED = 2000

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\}\}")

# type -> (label, css class)
_KINDS: dict[str, tuple[str, str]] = {
    "user_message": ("user", "k-user"),
    "assistant_message": ("assistant", "k-assistant"),
    "system_message": ("system", "k-system"),
    "final_response": ("final answer", "k-final"),
    "thought": ("thought", "k-thought"),
    "tool_call": ("tool call", "k-tool"),
    "observation": ("tool result", "k-observation"),
    "tool_error": ("tool error", "k-error"),
    "retrieval": ("retrieval", "k-retrieval"),
    "memory_read": ("memory read", "k-memory"),
    "memory_write": ("memory write", "k-memory"),
    "chain_start": ("chain start", "k-step"),
    "chain_end": ("chain end", "k-step"),
    "task": ("task", "k-step"),
    "workflow": ("workflow", "k-step"),
    "callback": ("callback", "k-step"),
    "embedding": ("embedding", "k-embedding"),
    "llm": ("llm", "k-llm"),
}


def esc(value: Any) -> str:
    """HTML-escape any value (quotes included)."""
    return html.escape("" if value is None else str(value), quote=True)


def pretty_json(value: Any) -> str:
    """Indented JSON, escaped for HTML."""
    try:
        text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return esc(text)


def _short_time(iso: str | None) -> str:
    if not iso:
        return ""
    # 2026-01-02T03:04:05.678901Z -> 03:04:05.678
    return iso[11:23] if len(iso) >= 23 else iso


def _highlight(template: str, variables: dict[str, str] | None) -> str:
    """Template text with each ``{{name}}`` shown as a highlighted chip (value if known)."""
    out: list[str] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(template):
        out.append(esc(template[pos : m.start()]))
        name = m.group(1)
        if variables and name in variables:
            out.append(
                f'<span class="var" title="{{{{{esc(name)}}}}}"><span class="var-name">'
                f"{esc(name)}</span>{esc(variables[name])}</span>"
            )
        else:
            out.append(f'<span class="var unfilled">{{{{{esc(name)}}}}}</span>')
        pos = m.end()
    out.append(esc(template[pos:]))
    return "".join(out)


# the usage vocabulary (core/usage.py), and the names stored before it for older data
_USAGE_KEYS = {
    "inputTokens": ("inputTokens", "input_tokens", "prompt_tokens"),
    "outputTokens": ("outputTokens", "output_tokens", "completion_tokens"),
    "totalTokens": ("totalTokens", "total_tokens"),
    "cacheReadTokens": ("cacheReadTokens",),
    "cacheWriteTokens": ("cacheWriteTokens",),
    "reasoningTokens": ("reasoningTokens",),
}
_USAGE_LABELS = (
    ("inputTokens", "in"),
    ("cacheReadTokens", "cached"),
    ("cacheWriteTokens", "cache write"),
    ("outputTokens", "out"),
    ("reasoningTokens", "reasoning"),
)


def _usage_counts(usage: dict[str, Any]) -> dict[str, int]:
    """A stored usage's counts under the vocabulary's names (older names read too)."""
    out: dict[str, int] = {}
    for key, names in _USAGE_KEYS.items():
        for name in names:
            value = usage.get(name)
            if type(value) is int:
                out[key] = value
                break
    if "totalTokens" not in out and "inputTokens" in out and "outputTokens" in out:
        out["totalTokens"] = out["inputTokens"] + out["outputTokens"]
    return out


def _conversation_usage(messages: list[dict[str, Any]]) -> dict[str, int]:
    """The conversation's token counts: the sum of its messages' (each model call once)."""
    total: dict[str, int] = {}
    for m in messages:
        props = m.get("properties")
        usage = props.get("usage") if isinstance(props, dict) else None
        if isinstance(usage, dict):
            for key, value in _usage_counts(usage).items():
                total[key] = total.get(key, 0) + value
    return total


def _cost(props: Any) -> float | None:
    """A message's ``costUsd`` (core/pricing.py), or None when it has no usable one."""
    value = props.get("costUsd") if isinstance(props, dict) else None
    if type(value) is int or type(value) is float:  # not a bool, not a string
        return float(value) if math.isfinite(value) and value >= 0 else None
    return None


def _usd(value: float) -> str:
    """Dollars to three significant digits, to the cent at least, no trailing zero past
    it: $0.0000925, $0.0075, $0.01, $1.50, $1234.57."""
    if value == 0:
        return "$0"
    decimals = min(max(2, 2 - math.floor(math.log10(value))), 12)
    whole, _, cents = f"{value:.{decimals}f}".partition(".")
    return f"${whole}.{cents.rstrip('0').ljust(2, '0')}"


def _conversation_cost(messages: list[dict[str, Any]]) -> tuple[float, int, int]:
    """(the sum of the messages' costs, how many had one, how many had usage but none)."""
    total, priced, unpriced = 0.0, 0, 0
    for m in messages:
        props = m.get("properties")
        cost = _cost(props)
        if cost is not None:
            total += cost
            priced += 1
        elif isinstance(props, dict) and isinstance(props.get("usage"), dict):
            unpriced += 1
    return total, priced, unpriced


def _pricing_title(props: dict[str, Any]) -> str:
    pricing = props.get("pricing")
    if isinstance(pricing, dict) and pricing.get("table"):
        version = f" {pricing['version']}" if pricing.get("version") else ""
        return f"estimated cost ({pricing['table']}{version})"
    return "estimated cost"


def _chips(msg: dict[str, Any]) -> str:
    props = msg.get("properties") or {}
    chips: list[str] = []
    if msg.get("toolName"):
        chips.append(f'<span class="chip chip-tool">{esc(msg["toolName"])}</span>')
    if msg.get("model"):
        chips.append(f'<span class="chip">{esc(msg["model"])}</span>')
    usage = props.get("usage") if isinstance(props, dict) else None
    if isinstance(usage, dict):
        counts = _usage_counts(usage)
        parts = [f"{label} {esc(counts[key])}" for key, label in _USAGE_LABELS if key in counts]
        text = " · ".join(parts) if parts else esc(json.dumps(usage)[:80])
        chips.append(f'<span class="chip chip-usage" title="token usage">{text} tok</span>')
    cost = _cost(props)
    if cost is not None:
        chips.append(
            f'<span class="chip chip-cost" title="{esc(_pricing_title(props))}">'
            f"{esc(_usd(cost))}</span>"
        )
    if isinstance(props, dict) and isinstance(props.get("latencyMs"), (int, float)):
        chips.append(f'<span class="chip chip-latency">{esc(round(props["latencyMs"]))} ms</span>')
    if isinstance(props, dict) and props.get("finishReason"):
        chips.append(f'<span class="chip">{esc(props["finishReason"])}</span>')
    return "".join(chips)


def _documents(output: Any) -> str:
    docs = output.get("documents") if isinstance(output, dict) else None
    if not isinstance(docs, list):
        return ""
    items = []
    for n, doc in enumerate(docs, 1):
        if not isinstance(doc, dict):
            items.append(f'<li class="doc"><pre>{pretty_json(doc)}</pre></li>')
            continue
        head = [f'<span class="doc-n">#{n}</span>']
        if doc.get("id"):
            head.append(f'<span class="doc-id">{esc(doc["id"])}</span>')
        if doc.get("score") is not None:
            head.append(f'<span class="chip">score {esc(doc["score"])}</span>')
        meta = doc.get("metadata")
        meta_html = (
            f'<div class="doc-meta">{esc(json.dumps(meta, ensure_ascii=False)[:300])}</div>'
            if meta
            else ""
        )
        items.append(
            f'<li class="doc"><div class="doc-head">{"".join(head)}</div>'
            f'<div class="doc-text">{esc(doc.get("text"))}</div>{meta_html}</li>'
        )
    return f'<ol class="docs">{"".join(items)}</ol>'


def _fmt_number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _rating(rating: dict[str, Any] | None, scope: str) -> str:
    """A rating badge (score on its scale, feedback text), coloured by its share of the scale."""
    if not rating:
        return ""
    low, high, score = rating["ratingMin"], rating["ratingMax"], rating["rating"]
    share = (score - low) / (high - low) if high > low else 0.0
    tone = "good" if share >= 0.67 else "bad" if share <= 0.33 else "mid"
    feedback = rating.get("feedback")
    return (
        f'<div class="rating r-{tone}" data-scope="{scope}" data-rating="{esc(score)}" '
        f'data-max="{esc(high)}" title="rated {esc(rating.get("ratedAt"))}">'
        f'<span class="rating-score">{scope} rating {esc(_fmt_number(score))} / '
        f"{esc(_fmt_number(high))}</span>"
        + (f'<span class="rating-feedback">{esc(feedback)}</span>' if feedback else "")
        + "</div>"
    )


def _event(event: dict[str, Any]) -> str:
    """One business event on the conversation's timeline."""
    influence = event.get("influence") or "neutral"
    chips = []
    if event.get("valueType"):
        chips.append(f'<span class="chip">{esc(event["valueType"])}</span>')
    if event.get("qualityImpactScore") is not None:
        chips.append(f'<span class="chip">impact {esc(event["qualityImpactScore"])}</span>')
    props = event.get("properties")
    return (
        f'<div class="event i-{esc(influence)}" data-event-type="{esc(event["eventType"])}" '
        f'data-influence="{esc(influence)}"><span class="event-dot"></span>'
        f'<span class="event-type">{esc(event["eventType"])}</span>'
        f'<span class="event-value">{esc(event.get("value"))}</span>{"".join(chips)}'
        f'<span class="spacer"></span>'
        f'<time title="{esc(event.get("eventAt"))}">{esc(_short_time(event.get("eventAt")))}</time>'
        + (f"<pre>{pretty_json(props)}</pre>" if props else "")
        + "</div>"
    )


def _message(depth: int, msg: dict[str, Any], rating: dict[str, Any] | None = None) -> str:
    mtype = msg.get("messageType") or "user_message"
    label, kind = _KINDS.get(mtype, (mtype, "k-step"))
    body: list[str] = []
    if msg.get("content"):
        body.append(f'<div class="content">{esc(msg["content"])}</div>')
    output = msg.get("output")
    if mtype == "retrieval":
        body.append(_documents(output))
    if msg.get("input") is not None:
        body.append(
            f'<div class="io"><div class="io-label">input</div>'
            f"<pre>{pretty_json(msg['input'])}</pre></div>"
        )
    if output is not None and not (mtype == "retrieval" and set(output) <= {"documents"}):
        shown = (
            {k: v for k, v in output.items() if k != "documents"}
            if mtype == "retrieval" and isinstance(output, dict)
            else output
        )
        body.append(
            '<div class="io"><div class="io-label">output</div>'
            f"<pre>{pretty_json(shown)}</pre></div>"
        )
    if msg.get("context"):
        body.append(
            f'<details class="ctx"><summary>context ({len(msg["context"])} chars)</summary>'
            f'<div class="content">{esc(msg["context"])}</div></details>'
        )
    in_chips: tuple[str, ...] = ("usage", "latencyMs", "finishReason")
    if _cost(msg.get("properties")) is not None:
        in_chips += ("costUsd", "pricing")
    props = {k: v for k, v in (msg.get("properties") or {}).items() if k not in in_chips}
    if props:
        body.append(
            f'<details class="props"><summary>properties</summary>'
            f"<pre>{pretty_json(props)}</pre></details>"
        )
    indent = min(depth, 6)
    ext = msg.get("externalMessageId")
    return (
        f'<article class="msg {kind}" data-type="{esc(mtype)}" data-depth="{depth}" '
        f'style="margin-left:{indent * 26}px" id="m-{esc(msg["id"])}">'
        f'<header><span class="badge">{esc(label)}</span>{_chips(msg)}'
        f'<span class="spacer"></span>'
        f'<time title="{esc(msg.get("createdAt"))}">{esc(_short_time(msg.get("createdAt")))}</time>'
        f"</header>{''.join(body)}{_rating(rating, 'message')}"
        + (f'<footer title="externalMessageId">{esc(ext)}</footer>' if ext else "")
        + "</article>"
    )


def _prompt(prompt: dict[str, Any] | None, variables: dict[str, str] | None) -> str:
    if not prompt:
        return ""
    comps = []
    for c in prompt.get("components") or []:
        tags = [f'<span class="chip">{esc(c.get("type") or "system")}</span>']
        if c.get("name"):
            tags.insert(0, f'<span class="comp-name">{esc(c["name"])}</span>')
        if c.get("source"):
            tags.append(f'<span class="chip">{esc(c["source"])}</span>')
        if c.get("isDynamic"):
            tags.append('<span class="chip chip-dyn">dynamic</span>')
        comps.append(
            f'<div class="comp"><div class="comp-head">{"".join(tags)}'
            f'<span class="spacer"></span><code>{esc(c.get("id", "")[:8])}</code></div>'
            f'<div class="comp-body">{_highlight(c.get("content") or "", variables)}</div></div>'
        )
    ext = prompt.get("externalPromptId")
    title = f"system prompt · {esc(ext)}" if ext else "system prompt"
    return f'<section class="prompt"><h3>{title}</h3>{"".join(comps)}</section>'


_CSS = """
:root{--bg:#f6f7f9;--panel:#fff;--ink:#1d2330;--muted:#6b7385;--line:#e3e6ec;
--accent:#1f9d55;--user:#2f6fed;--tool:#c27803;--err:#d93b3b;--ret:#7c4ddb;--step:#8a93a6}
*{box-sizing:border-box}
body{margin:0;font:14px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
background:var(--bg);color:var(--ink)}
.top{display:flex;align-items:center;gap:10px;padding:12px 20px;background:#111827;color:#fff}
.top .logo{width:12px;height:12px;border-radius:50%;background:#34d399;box-shadow:0 0 8px #34d399}
.top b{font-weight:600}.top .sub{color:#9ca3af;font-size:12px}
.wrap{display:grid;grid-template-columns:300px 1fr;min-height:calc(100vh - 46px)}
nav{border-right:1px solid var(--line);background:var(--panel);overflow:auto}
nav h2{font-size:11px;letter-spacing:.08em;text-transform:uppercase;color:var(--muted);margin:16px 16px 8px}
nav a{display:block;padding:10px 16px;border-bottom:1px solid var(--line);color:inherit;text-decoration:none}
nav a:hover{background:#f2f5fb}nav a.on{background:#eaf1ff;border-left:3px solid var(--user);padding-left:13px}
nav .t{font-weight:600;font-size:13px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
nav .p{color:var(--muted);font-size:12px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
nav .m{color:var(--muted);font-size:11px;margin-top:2px}
main{padding:20px 28px;max-width:1100px}
.conv-head h1{font-size:18px;margin:0 0 6px}
.meta{display:flex;flex-wrap:wrap;gap:6px;margin-bottom:16px}
.chip{display:inline-block;font-size:11px;padding:1px 8px;border-radius:10px;background:#eef0f4;color:#444c5e;
margin-left:6px;white-space:nowrap}
.meta .chip{margin-left:0}
.chip-tool{background:#fff3dc;color:#8a5300;font-family:ui-monospace,Menlo,Consolas,monospace}
.chip-usage{background:#e7f6ee;color:#17663b}.chip-latency{background:#eef2ff;color:#3446a8}
.chip-cost{background:#fdf3e1;color:#7a4b00}
.chip-dyn{background:#fdecef;color:#a1284a}
.prompt{background:var(--panel);border:1px solid var(--line);border-radius:10px;padding:12px 14px;margin-bottom:18px}
.prompt h3{margin:0 0 8px;font-size:12px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted)}
.comp{border-left:3px solid #cbd2e1;padding:4px 10px;margin:8px 0}
.comp-head{display:flex;align-items:center;gap:4px;margin-bottom:2px}.comp-head .chip{margin-left:0}
.comp-name{font-weight:600;font-size:12px;margin-right:4px}
.comp-head code{color:var(--muted);font-size:11px}
.comp-body{white-space:pre-wrap}
.var{background:#fff4c2;border:1px solid #f0d264;border-radius:4px;padding:0 4px}
.var-name{font-size:10px;color:#8a6d00;margin-right:4px;text-transform:uppercase;letter-spacing:.04em}
.var.unfilled{font-family:ui-monospace,Menlo,monospace;font-size:12px}
.msg{background:var(--panel);border:1px solid var(--line);border-left:4px solid var(--step);border-radius:8px;
padding:8px 12px;margin:8px 0;position:relative}
.msg header{display:flex;align-items:center;gap:2px;font-size:12px;color:var(--muted)}
.msg .spacer,.comp-head .spacer{flex:1}
.badge{font-weight:700;font-size:11px;text-transform:uppercase;letter-spacing:.05em;color:var(--step)}
.msg .content{white-space:pre-wrap;word-break:break-word;margin-top:4px}
.msg pre{margin:4px 0 0;background:#f7f8fb;border:1px solid var(--line);border-radius:6px;padding:8px;
font:12px/1.45 ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;word-break:break-word;max-height:320px;overflow:auto}
.io-label{font-size:10px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);margin-top:6px}
.msg footer{font-size:10px;color:#a3aabb;margin-top:4px;font-family:ui-monospace,Menlo,monospace}
details summary{cursor:pointer;color:var(--muted);font-size:12px;margin-top:4px}
.k-user{border-left-color:var(--user);background:#f5f8ff}.k-user .badge{color:var(--user)}
.k-assistant,.k-final{border-left-color:var(--accent)}.k-assistant .badge,.k-final .badge{color:var(--accent)}
.k-final{background:#f3fbf6}
.k-system .badge{color:#555}
.k-thought{border-left-color:#b0b7c6}.k-thought .content{font-style:italic;color:#4b5365}
.k-tool{border-left-color:var(--tool)}.k-tool .badge{color:var(--tool)}
.k-observation{border-left-color:#d9a441}.k-observation .badge{color:#a16a00}
.k-error{border-left-color:var(--err);background:#fff6f6}.k-error .badge{color:var(--err)}
.k-retrieval{border-left-color:var(--ret)}.k-retrieval .badge{color:var(--ret)}
.k-llm .badge,.k-embedding .badge,.k-memory .badge{color:#0e7490}.k-llm,.k-embedding,.k-memory{border-left-color:#0e7490}
.k-step{padding:4px 12px}
.docs{margin:6px 0 0;padding-left:0;list-style:none}
.doc{border:1px solid #e6e0f7;background:#faf8ff;border-radius:6px;padding:6px 10px;margin:6px 0}
.doc-head{display:flex;gap:6px;align-items:center;font-size:12px}.doc-head .chip{margin-left:0}
.doc-n{color:var(--ret);font-weight:700}.doc-id{font-family:ui-monospace,Menlo,monospace;color:#555}
.doc-text{white-space:pre-wrap;margin-top:2px}.doc-meta{font-size:11px;color:var(--muted)}
.empty{color:var(--muted);padding:40px 0}
.rating{display:flex;flex-wrap:wrap;align-items:baseline;gap:8px;margin-top:6px;padding:4px 10px;
border-radius:6px;font-size:12px;background:#f3f4f6;border:1px solid var(--line)}
.rating-score{font-weight:700}.rating-feedback{font-style:italic;color:#374151;white-space:pre-wrap}
.rating-feedback:before{content:"\u201c"}.rating-feedback:after{content:"\u201d"}
.r-good{background:#ecfdf3;border-color:#a7e3bf}.r-good .rating-score{color:#17663b}
.r-bad{background:#fff1f1;border-color:#f3b4b4}.r-bad .rating-score{color:#b42323}
.r-mid{background:#fffbea;border-color:#f0d264}.r-mid .rating-score{color:#8a6d00}
.conv-head .rating{margin:0 0 16px}
.event{display:flex;flex-wrap:wrap;align-items:center;gap:6px;margin:10px 0;padding:6px 12px;
border:1px dashed #c7cdd9;border-radius:18px;background:#fff;font-size:12px}
.event .chip{margin-left:0}.event .spacer{flex:1}.event time{color:var(--muted)}
.event pre{flex-basis:100%;margin:4px 0 0;font:11px/1.4 ui-monospace,Menlo,monospace;white-space:pre-wrap}
.event-dot{width:10px;height:10px;border-radius:50%;background:var(--step)}
.event-type{font-weight:700}.event-value{font-family:ui-monospace,Menlo,monospace}
.i-positive{border-color:#7fcf9f}.i-positive .event-dot{background:var(--accent)}
.i-negative{border-color:#f0a0a0}.i-negative .event-dot{background:var(--err)}
"""  # noqa: E501


def render_page(store: Store, conversation_id: str | None = None, limit: int = 100) -> str:
    """The whole viewer page: list on the left, one conversation's transcript."""
    listing = store.list_conversations(limit=limit)
    convs = listing["conversations"]
    if conversation_id is None and convs:
        conversation_id = convs[0]["id"]
    conv = store.get_conversation(conversation_id) if conversation_id else None
    if conv is None and conversation_id:
        found = store.find_conversation_id(conversation_id)
        conv = store.get_conversation(found) if found else None

    nav = []
    for c in convs:
        on = " on" if conv is not None and c["id"] == conv["id"] else ""
        title = c["externalConversationId"] or c["id"]
        nav.append(
            f'<a class="conv{on}" href="/conversations/{esc(c["id"])}">'
            f'<div class="t">{esc(title)}</div>'
            f'<div class="p">{esc(c.get("preview") or "")}</div>'
            f'<div class="m">{esc(c["externalUserId"])} · {esc(c["messageCount"])} messages · '
            f"{esc((c.get('lastMessageAt') or c['updatedAt'])[:16].replace('T', ' '))}</div></a>"
        )
    if not convs:
        nav.append('<div class="m" style="padding:16px">nothing stored yet</div>')

    if conv is None:
        main = (
            '<div class="empty">No conversation yet. Send one with <code>gf-integrations demo'
            "</code> or point a client at <code>/api/v1</code>.</div>"
        )
    else:
        meta = [f'<span class="chip">user {esc(conv["externalUserId"])}</span>']
        if conv.get("externalOrganizationId"):
            meta.append(f'<span class="chip">org {esc(conv["externalOrganizationId"])}</span>')
        if conv.get("productId"):
            meta.append(f'<span class="chip">product {esc(conv["productId"])}</span>')
        if conv.get("model"):
            meta.append(f'<span class="chip">{esc(conv["model"])}</span>')
        meta.append(f'<span class="chip">{len(conv["messages"])} messages</span>')
        used = _conversation_usage(conv["messages"])
        if used:
            parts = [f"{label} {esc(used[key])}" for key, label in _USAGE_LABELS if key in used]
            if "totalTokens" in used:
                parts.append(f"total {esc(used['totalTokens'])}")
            meta.append(
                '<span class="chip chip-usage conv-usage" title="tokens of the conversation">'
                f"{' · '.join(parts)} tok</span>"
            )
        cost, priced, unpriced = _conversation_cost(conv["messages"])
        if priced:
            # a model call without a price (a model the table does not know, older data)
            # is left out of the sum, and said so
            more = f" + {unpriced} unpriced" if unpriced else ""
            meta.append(
                '<span class="chip chip-cost conv-cost" title="estimated cost of the priced '
                f'model calls">{esc(_usd(cost))}{esc(more)}</span>'
            )
        meta.append(f'<span class="chip"><code>{esc(conv["id"])}</code></span>')
        ratings = {r["messageId"]: r for r in conv.get("ratings") or ()}
        events = list(conv.get("events") or ())
        if events:
            meta.append(f'<span class="chip">{len(events)} events</span>')
        rendered: list[str] = []
        for n, (depth, m) in enumerate(iter_tree(conv["tree"])):
            if n == MAX_RENDERED:  # keep huge imports viewable; the JSON API has them all
                rendered.append(
                    f'<div class="empty">showing the first {MAX_RENDERED} of '
                    f"{len(conv['messages'])} messages; the rest are in <code>/api/v1/"
                    f"conversations/{esc(conv['id'])}</code></div>"
                )
                break
            # events go on the timeline between the turns they happened between
            while depth == 0 and events and events[0]["eventAt"] < (m.get("createdAt") or ""):
                rendered.append(_event(events.pop(0)))
            rendered.append(_message(depth, m, ratings.get(m["id"])))
        rendered.extend(_event(e) for e in events)
        msgs = "".join(rendered)
        main = (
            f'<div class="conv-head"><h1>{esc(conv["externalConversationId"] or conv["id"])}</h1>'
            f'<div class="meta">{"".join(meta)}</div>{_rating(ratings.get(None), "conversation")}'
            "</div>"
            f"{_prompt(conv.get('prompt'), conv.get('promptVariables'))}"
            f'<section class="transcript">{msgs}</section>'
        )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        "<title>gf-integrations · local collector</title>"
        f"<style>{_CSS}</style></head><body>"
        '<div class="top"><span class="logo"></span><b>gf-integrations</b>'
        '<span class="sub">local collector · Greenflash-compatible</span></div>'
        f'<div class="wrap"><nav><h2>Conversations ({esc(listing["total"])})</h2>'
        f"{''.join(nav)}</nav>"
        f"<main>{main}</main></div></body></html>"
    )

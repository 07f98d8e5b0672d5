"""Show what Greenflash received, inside a Jupyter notebook.

:func:`transcript` turns stored (or captured) messages into a :class:`Transcript`, an
object that Jupyter displays as an HTML transcript: one row per message, threaded by
parent, each message type visually distinct, tool input/output as JSON, retrieved
context folded away. Every piece of content is HTML-escaped, so a message containing
``<script>`` shows as text.

The output is deterministic on purpose (no timestamps, ids or latencies), so executed
notebooks can be committed with their outputs::

    from gf_integrations.notebook import transcript
    transcript(collector.messages("c1"), title="c1")   # last expression of a cell

Or, with the local collector (:func:`gf_integrations.collector.start_collector`)::

    from gf_integrations.notebook import show
    show(collector, "c1")        # flushes the default client, then renders what was stored

The module imports neither IPython nor any framework: Jupyter finds ``_repr_html_``.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from .transcript import depths, field, parse_json_text, summary

__all__ = ["Transcript", "from_conversation", "show", "transcript"]

# Background, border and label per message kind: distinct at a glance, readable in
# both light and dark notebook themes (text colour is set explicitly).
_STYLE: dict[str, tuple[str, str, str]] = {
    "user": ("#e8f0fe", "#1a73e8", "user"),
    "assistant": ("#e6f4ea", "#188038", "assistant"),
    "final_response": ("#e6f4ea", "#0b5f2a", "final response"),
    "system": ("#f1f3f4", "#5f6368", "system"),
    "thought": ("#fef7e0", "#b06000", "thought"),
    "tool_call": ("#f3e8fd", "#8430ce", "tool call"),
    "observation": ("#fce8f3", "#a0337e", "observation"),
    "tool_error": ("#fce8e6", "#c5221f", "tool error"),
    "retrieval": ("#e4f7fb", "#007b83", "retrieval"),
    "embedding": ("#f1f3f4", "#5f6368", "embedding"),
}
_DEFAULT_STYLE = ("#f8f9fa", "#80868b", "")

# Properties worth a glance in a transcript; latency is left out because it changes on
# every run (the viewer shows it).
_SHOWN_PROPERTIES = ("finishReason", "provider", "partial", "refusal")


def _kind(msg: Mapping[str, Any]) -> str:
    kind = field(msg, "messageType", "message_type", "type", "role") or "message"
    kind = str(kind)
    # Greenflash stores role-messages as user_message / assistant_message.
    return {"user_message": "user", "assistant_message": "assistant"}.get(kind, kind)


def _json_block(value: Any) -> str:
    value = parse_json_text(value)
    if isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)
    return f'<pre style="margin:4px 0;white-space:pre-wrap">{html.escape(text)}</pre>'


def _meta(msg: Mapping[str, Any]) -> str:
    bits: list[str] = []
    model = field(msg, "model")
    if model:
        bits.append(f"model {model}")
    props = parse_json_text(field(msg, "properties")) or {}
    if isinstance(props, Mapping):
        usage = props.get("usage")
        if isinstance(usage, Mapping):
            total = usage.get("total_tokens", usage.get("totalTokens"))
            if total is not None:
                bits.append(f"{total} tokens")
        for name in _SHOWN_PROPERTIES:
            if props.get(name) not in (None, False):
                bits.append(f"{name} {props[name]}")
    return " · ".join(html.escape(str(b)) for b in bits)


def _documents_html(docs: list[Any]) -> str:
    """Retrieved documents as a numbered list: source or id, score, text excerpt."""
    items = []
    for doc in docs:
        if not isinstance(doc, Mapping):
            items.append(f"<li>{html.escape(str(doc))}</li>")
            continue
        meta = doc.get("metadata")
        source = meta.get("source") if isinstance(meta, Mapping) else None
        label = html.escape(str(source or doc.get("id") or "document"))
        score = doc.get("score")
        shown = f" <small>score {score:.2f}</small>" if isinstance(score, (int, float)) else ""
        text = html.escape(str(doc.get("text") or ""))
        items.append(f"<li><code>{label}</code>{shown}: {text}</li>")
    return f'<ol style="margin:4px 0;padding-left:22px">{"".join(items)}</ol>'


class Transcript:
    """A conversation as Jupyter-displayable HTML (``_repr_html_``) and plain text.

    Args:
        messages: message dicts as the Greenflash API takes them or the local
            collector stores them (camelCase or snake_case keys both work).
        title: shown above the transcript (e.g. the conversation id).
        system_prompt: the conversation's system prompt (string, or the wire object
            with ``content`` or ``components`` and ``variables``).
        viewer_url: a link to the same conversation in a viewer.
    """

    def __init__(
        self,
        messages: Iterable[Mapping[str, Any]],
        *,
        title: str | None = None,
        system_prompt: Any = None,
        viewer_url: str | None = None,
    ) -> None:
        self.messages: list[Mapping[str, Any]] = list(messages)
        self.title = title
        self.system_prompt = system_prompt
        self.viewer_url = viewer_url

    # -- structure -------------------------------------------------------------------

    def _threaded(self) -> list[tuple[int, Mapping[str, Any]]]:
        """Messages in stored order, each with its depth below its parent (at most 6)."""
        levels = depths(self.messages)
        return [(min(d, 6), m) for d, m in zip(levels, self.messages, strict=True)]

    @property
    def kinds(self) -> list[str]:
        """The message kinds in order (``user``, ``tool_call``, ``final_response``...)."""
        return [_kind(m) for m in self.messages]

    # -- rendering -------------------------------------------------------------------

    def _system_html(self) -> str:
        sp = parse_json_text(self.system_prompt)
        if not sp:
            return ""
        bg, border, _ = _STYLE["system"]
        parts: list[str] = []
        if isinstance(sp, str):
            parts.append(_json_block(sp))
        elif isinstance(sp, Mapping):
            if sp.get("content"):
                parts.append(_json_block(str(sp["content"])))
            for comp in sp.get("components") or []:
                if isinstance(comp, Mapping):
                    label = html.escape(str(comp.get("name") or comp.get("type") or "component"))
                    parts.append(
                        f"<div><i>{label}</i>{_json_block(str(comp.get('content')))}</div>"
                    )
            if sp.get("variables"):
                parts.append("<div><i>variables</i>" + _json_block(sp["variables"]) + "</div>")
        return (
            f'<div style="background:{bg};border-left:4px solid {border};padding:6px 10px;'
            f'margin:4px 0;color:#202124"><b>system prompt</b>{"".join(parts)}</div>'
        )

    def _message_html(self, depth: int, msg: Mapping[str, Any]) -> str:
        kind = _kind(msg)
        bg, border, label = _STYLE.get(kind, _DEFAULT_STYLE)
        head = html.escape(label or kind)
        tool = field(msg, "toolName", "tool_name")
        if tool:
            head += f" <code>{html.escape(str(tool))}</code>"
        meta = _meta(msg)
        if meta:
            head += f' <span style="color:#5f6368;font-size:85%">{meta}</span>'
        body: list[str] = []
        content = field(msg, "content")
        if content not in (None, ""):
            body.append(f'<div style="white-space:pre-wrap">{html.escape(str(content))}</div>')
        for name in ("input", "output"):
            value = parse_json_text(field(msg, name))
            # Skip what repeats the content: an observation's {"result": ...}, a
            # retrieval's {"query": ...}.
            if value in (None, {}, "") or value in ({"result": content}, {"query": content}):
                continue
            docs = value.get("documents") if isinstance(value, Mapping) else None
            if kind == "retrieval" and isinstance(docs, list) and len(value) == 1:
                body.append(_documents_html(docs))
                continue
            body.append(f"<div><i>{name}</i>{_json_block(value)}</div>")
        context = field(msg, "context")
        if context:
            body.append(f"<details><summary>context</summary>{_json_block(str(context))}</details>")
        return (
            f'<div class="gf-msg gf-{html.escape(kind)}" style="background:{bg};'
            f"border-left:4px solid {border};padding:6px 10px;margin:4px 0 4px "
            f'{depth * 24}px;color:#202124"><b>{head}</b>{"".join(body)}</div>'
        )

    def _repr_html_(self) -> str:
        parts = ['<div class="gf-transcript" style="font-family:sans-serif;font-size:90%">']
        if self.title:
            parts.append(f'<h4 style="margin:4px 0">{html.escape(self.title)}</h4>')
        parts.append(self._system_html())
        parts.extend(self._message_html(d, m) for d, m in self._threaded())
        if not self.messages:
            parts.append("<p><i>no messages stored</i></p>")
        if self.viewer_url:
            url = html.escape(self.viewer_url, quote=True)
            parts.append(f'<p>Open in the viewer: <a href="{url}" target="_blank">{url}</a></p>')
        parts.append("</div>")
        return "".join(parts)

    def __str__(self) -> str:
        lines = [self.title] if self.title else []
        for depth, msg in self._threaded():
            kind = _kind(msg)
            tool = field(msg, "toolName", "tool_name")
            label = f"{kind}({tool})" if tool else kind
            short = summary(msg, 100)
            lines.append(f"{'  ' * depth}{label}: {short}")
        if self.viewer_url:
            lines.append(f"viewer: {self.viewer_url}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<Transcript {self.title or ''} ({len(self.messages)} messages)>".replace("  ", " ")


def transcript(
    messages: Iterable[Mapping[str, Any]],
    *,
    title: str | None = None,
    system_prompt: Any = None,
    viewer_url: str | None = None,
) -> Transcript:
    """Build a :class:`Transcript`; make it a cell's last expression to display it."""
    return Transcript(messages, title=title, system_prompt=system_prompt, viewer_url=viewer_url)


def from_conversation(conv: Mapping[str, Any], *, viewer_url: str | None = None) -> Transcript:
    """A :class:`Transcript` of one conversation as the local collector returns it
    (``Store.get_conversation`` / ``GET /api/v1/conversations/{id}``): its messages, its
    system prompt with components and variables, titled by the external conversation id."""
    prompt = conv.get("prompt")
    system_prompt: Any = None
    if isinstance(prompt, Mapping):
        system_prompt = {
            "components": prompt.get("components") or [],
            "variables": conv.get("promptVariables") or None,
        }
    title = str(conv.get("externalConversationId") or conv.get("id") or "")
    return Transcript(
        conv.get("messages") or [],
        title=f"conversation {title}" if title else None,
        system_prompt=system_prompt,
        viewer_url=viewer_url,
    )


class _Collector(Protocol):
    """What :func:`show` needs from a collector (``RunningCollector`` has it)."""

    url: str

    def conversation(self, external_conversation_id: str) -> dict[str, Any] | None: ...


def show(collector: _Collector, external_conversation_id: str, *, flush: bool = True) -> Transcript:
    """Render what ``collector`` stored for one conversation, with a link to its viewer page.

    With ``flush`` (default) the default client is flushed first, so everything recorded
    so far has arrived. An unknown conversation renders as "no messages stored".
    """
    if flush:
        from .client import flush as flush_default

        flush_default(10.0)
    conv = collector.conversation(external_conversation_id)
    if conv is None:
        return Transcript([], title=f"conversation {external_conversation_id}")
    url = f"{collector.url.rstrip('/')}/conversations/{conv.get('id')}"
    return from_conversation(conv, viewer_url=url)

"""Prompt templates: LlamaIndex templates as components with ``{{var}}`` placeholders."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core.events import (
    PromptComponent,
    SystemPrompt,
)
from .convert import _blocks_text, _role

_TEMPLATE_CACHE: dict[Any, tuple[list[PromptComponent], frozenset[str]]] = {}
_TEMPLATE_CACHE_MAX = 256


def _template_parts(inner: Any) -> tuple[list[PromptComponent], frozenset[str]] | None:
    """Components and placeholder names of a template; cached by its texts (host thread)."""
    message_templates = getattr(inner, "message_templates", None)
    if message_templates:
        raw: list[tuple[str, str]] = []
        for m in message_templates:
            text, _, _ = _blocks_text(m)
            if text:
                raw.append((_role(m), text))
        key: Any = tuple(raw)
    else:
        text = getattr(inner, "template", None)
        if not (isinstance(text, str) and text):
            return None
        raw = [("template", text)]
        key = text
    hit = _TEMPLATE_CACHE.get(key)
    if hit is not None:
        return hit
    comps: list[PromptComponent] = []
    names: set[str] = set()
    for role, text in raw:
        content, found = _braces(text)
        names.update(found)
        comp: PromptComponent = {"content": content, "name": role}
        if role == "template":
            comp["type"] = "user"
        else:
            comp["type"] = role if role in ("system", "user") else "other"
            comp["source"] = "customer"
        comps.append(comp)
    if not comps:
        return None
    if len(_TEMPLATE_CACHE) >= _TEMPLATE_CACHE_MAX:
        _TEMPLATE_CACHE.clear()
    parts = (comps, frozenset(names))
    _TEMPLATE_CACHE[key] = parts
    return parts


def _template_prompt(template: Any, args: Mapping[str, Any] | None) -> SystemPrompt | None:
    """A LlamaIndex prompt template as components with ``{{var}}`` and variables."""
    inner = getattr(template, "default_template", None) or template
    parts = _template_parts(inner)
    if parts is None:
        return None
    comps, names = parts
    variables: dict[str, str] = {}
    for source in (getattr(template, "kwargs", None), getattr(inner, "kwargs", None), args):
        if isinstance(source, Mapping):
            for k, v in source.items():
                if k in names:
                    variables[str(k)] = v if isinstance(v, str) else str(v)
    # the recorder only reads the cached components (it builds new wire dicts)
    return SystemPrompt(components=list(comps), variables=variables or None)


def _braces(text: str) -> tuple[str, list[str]]:
    """Python-format ``{var}`` -> Greenflash ``{{var}}`` (``{{``/``}}`` literals stay single).

    Returns the converted text and the placeholder names found.
    """
    names: list[str] = []
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "{" and i + 1 < n and text[i + 1] == "{":
            out.append("{")
            i += 2
        elif c == "}" and i + 1 < n and text[i + 1] == "}":
            out.append("}")
            i += 2
        elif c == "{":
            j = text.find("}", i + 1)
            name = text[i + 1 : j] if j > 0 else ""
            if j > 0 and name.isidentifier():
                out.append("{{" + name + "}}")
                names.append(name)
                i = j + 1
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out), names

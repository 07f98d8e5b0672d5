"""Prompt templates: a ``ChatPromptTemplate``'s system message as Greenflash components.

Runs on the host thread at the model call's end, cached per template object: the
serialized template is the prompt's cached ``_serialized`` dict, so its id is stable while
a cache entry holds the reference. A system prompt becomes components with ``{{var}}``
placeholders plus ``variables`` only when the text the model received is exactly the
template's rendering; otherwise (None) the recorder sends the SystemMessage text.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..core.events import PromptComponent, SystemPrompt
from .convert import text

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage

_formatter = string.Formatter()
_TEMPLATES_MAX = 256
_RENDERS_MAX = 512
# id(serialized) -> (serialized, [(template, variable names)] or None)
_template_cache: dict[int, tuple[Mapping[str, Any], list[tuple[str, list[str]]] | None]] = {}
# (id(serialized), system text received) -> (serialized, the prompt or None)
_render_cache: dict[tuple[int, str], tuple[Mapping[str, Any], SystemPrompt | None]] = {}


def _system_templates(serialized: Mapping[str, Any]) -> list[tuple[str, list[str]]] | None:
    cached = _template_cache.get(id(serialized))
    if cached is not None and cached[0] is serialized:
        return cached[1]
    found: list[tuple[str, list[str]]] = []
    result: list[tuple[str, list[str]]] | None = found
    try:
        for m in (serialized.get("kwargs") or {}).get("messages") or ():
            ident = m.get("id") or ()
            if not ident or ident[-1] != "SystemMessagePromptTemplate":
                continue
            prompt = (m.get("kwargs") or {}).get("prompt") or {}
            pk = prompt.get("kwargs") or {}
            template = pk.get("template")
            if not isinstance(template, str) or pk.get("template_format", "f-string") != "f-string":
                result = None  # multimodal / mustache / jinja2: send the plain text
                break
            names = [f for _, f, _, _ in _formatter.parse(template) if f is not None]
            found.append((template, names))
    except Exception:
        result = None
    if len(_template_cache) > _TEMPLATES_MAX:
        _template_cache.clear()
    _template_cache[id(serialized)] = (serialized, result)
    return result or None


def braces(template: str) -> str:
    """``{var}`` f-string placeholders as Greenflash ``{{var}}``; escaped braces unescaped."""
    out = []
    for literal, field, _spec, _conv in _formatter.parse(template):
        out.append(literal)
        if field is not None:
            out.append("{{" + field + "}}")
    return "".join(out)


def template_prompt(
    prompt: tuple[Mapping[str, Any], Any], messages: Sequence[BaseMessage]
) -> SystemPrompt | None:
    """The system prompt as components + variables when it is exactly the template's output.

    Cached per (template, system text the model received): the same prompt rendered
    with the same variables is the common case on the hot path.
    """
    serialized, inputs = prompt
    texts = [m.content for m in messages if m.type == "system"]
    actual = texts[0] if len(texts) == 1 and texts[0].__class__ is str else None
    if actual is None:
        actual = "\n\n".join(t for t in map(text, texts) if t)
    key = (id(serialized), actual)
    cached = _render_cache.get(key)
    if cached is not None and cached[0] is serialized:
        return cached[1]
    result = _render_template(serialized, inputs, actual)
    if len(_render_cache) >= _RENDERS_MAX:
        _render_cache.clear()
    _render_cache[key] = (serialized, result)
    return result


def _render_template(
    serialized: Mapping[str, Any], inputs: Any, actual: str
) -> SystemPrompt | None:
    templates = _system_templates(serialized)
    if not templates or not isinstance(inputs, Mapping):
        return None
    partials = (serialized.get("kwargs") or {}).get("partial_variables") or {}
    variables: dict[str, str] = {}
    for _template, names in templates:
        for n in names:
            v = inputs[n] if n in inputs else partials.get(n)
            if v is None:
                return None
            variables[n] = v if isinstance(v, str) else str(v)
    rendered = "\n\n".join(t for t in (tpl.format(**variables) for tpl, _n in templates) if t)
    # only when the model really received the template's rendering (a later, different
    # prompt in the same tree, or a system message built elsewhere, falls back to text)
    if rendered != actual:
        return None
    components: list[PromptComponent] = [
        {"content": braces(t), "type": "system", "source": "customer", "is_dynamic": bool(n)}
        for t, n in templates
    ]
    return SystemPrompt(components=components, variables=variables or None)

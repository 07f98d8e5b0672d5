"""One reading of a conversation as a tree, shared by the viewer, the notebook display and the CLI.

Messages come in two spellings: as the local collector stores them (``id`` / ``parentId``)
and as the Greenflash API takes them (``externalMessageId`` / ``parentExternalMessageId``,
camelCase or snake_case). A message whose parent is unknown, or is itself, is a root.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

__all__ = ["build_tree", "depths", "field", "iter_tree", "parse_json_text", "summary"]

_ID_KEYS = ("id", "externalMessageId", "external_message_id")
_PARENT_KEYS = ("parentId", "parent_id", "parentExternalMessageId", "parent_external_message_id")


def field(msg: Mapping[str, Any], *names: str) -> Any:
    """The first present (not None) value among several spellings of a field."""
    for name in names:
        value = msg.get(name)
        if value is not None:
            return value
    return None


def _parents(messages: Sequence[Mapping[str, Any]]) -> list[int | None]:
    """For each message, the index of its parent in ``messages`` (None for a root)."""
    index: dict[str, int] = {}
    for n, msg in enumerate(messages):
        for key in _ID_KEYS:
            if msg.get(key) is not None:
                index.setdefault(str(msg[key]), n)
    out: list[int | None] = []
    for n, msg in enumerate(messages):
        parent = field(msg, *_PARENT_KEYS)
        found = index.get(str(parent)) if parent is not None else None
        out.append(found if found is not None and found != n else None)
    return out


def build_tree(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Nest copies of the messages under their parents (``children``), keeping their order."""
    nodes: list[dict[str, Any]] = [{**m, "children": []} for m in messages]
    roots: list[dict[str, Any]] = []
    for node, parent in zip(nodes, _parents(messages), strict=True):
        (nodes[parent]["children"] if parent is not None else roots).append(node)
    return roots


def iter_tree(roots: list[dict[str, Any]], depth: int = 0) -> Iterator[tuple[int, dict[str, Any]]]:
    """Depth-first ``(depth, node)`` pairs of a :func:`build_tree` result."""
    stack = [(depth, n) for n in reversed(roots)]
    while stack:
        d, node = stack.pop()
        yield d, node
        stack.extend((d + 1, c) for c in reversed(node["children"]))


def depths(messages: Sequence[Mapping[str, Any]]) -> list[int]:
    """Each message's depth below its root, in the given order (a parent listed later
    than its child counts as unknown, so this never loops)."""
    out: list[int] = []
    for n, parent in enumerate(_parents(messages)):
        out.append(out[parent] + 1 if parent is not None and parent < n else 0)
    return out


def parse_json_text(value: Any) -> Any:
    """A JSON text parsed (the collector stores input/output as text); anything else as is."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def summary(msg: Mapping[str, Any], width: int) -> str:
    """The message's content (else its input, else its output) on one line of ``width``."""
    text = field(msg, "content")
    for key in (("input",), ("output",)):
        if text in (None, "") and field(msg, *key) is not None:
            value = parse_json_text(field(msg, *key))
            text = (
                value
                if isinstance(value, str)
                else json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
            )
    short = " ".join(str(text or "").split())
    return short if len(short) <= width else short[: width - 3] + "..."

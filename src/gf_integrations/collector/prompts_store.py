"""Collector storage for prompts: system prompts, components and template matching."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import sqlite3
import threading
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..schema import Component, SystemPromptObject
from ._rows import NS, IngestError
from ._rows import iso as _iso
from ._rows import sid as _sid

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\}\}")


def template_regex(template: str) -> re.Pattern[str]:
    """A regex matching ``template`` with each ``{{name}}`` as a wildcard."""
    parts: list[str] = []
    seen: set[str] = set()
    pos = 0
    for m in _PLACEHOLDER.finditer(template):
        parts.append(re.escape(template[pos : m.start()]))
        name = m.group(1)
        group = "v" + uuid.uuid5(NS, name).hex[:12]
        if group in seen:
            parts.append(f"(?P={group})")
        else:
            seen.add(group)
            parts.append(f"(?P<{group}>.+?)")
        pos = m.end()
    parts.append(re.escape(template[pos:]))
    return re.compile("".join(parts), re.DOTALL)


def fill(template: str, variables: dict[str, str] | None) -> str:
    """Replace ``{{name}}`` placeholders that have a value."""
    if not variables:
        return template

    def sub(m: re.Match[str]) -> str:
        return variables.get(m.group(1), m.group(0))

    return _PLACEHOLDER.sub(sub, template)


@dataclasses.dataclass(slots=True)
class _PromptResult:
    prompt_id: str
    component_ids: list[str]
    variables: dict[str, str] | None = None
    template_match: dict[str, Any] | None = None


class PromptsMixin:
    """System prompts, components and template matching; mixed into the collector's ``Store``."""

    if TYPE_CHECKING:  # provided by Store
        _db: sqlite3.Connection
        _lock: threading.Lock

        def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]: ...

    def _system_prompt(self, sp: str | SystemPromptObject, now: dt.datetime) -> _PromptResult:
        if isinstance(sp, str):
            match = self._match_template(sp)
            if match is not None:
                return match
            comp = Component(content=sp, type="system")
            return self._upsert_prompt(None, [comp], None, now)
        if sp.prompt_id is not None and sp.content is None and sp.components is None:
            row = self._db.execute(
                "SELECT id FROM prompts WHERE id = ?", (sp.prompt_id,)
            ).fetchone()
            if row is None:
                raise IngestError(
                    [
                        {
                            "path": "systemPrompt.promptId",
                            "message": f"unknown prompt {sp.prompt_id!r}",
                        }
                    ]
                )
            return _PromptResult(sp.prompt_id, self._component_ids(sp.prompt_id), sp.variables)
        if sp.content is None and sp.components is None:
            row = self._db.execute(
                "SELECT id FROM prompts WHERE external_id = ?", (sp.external_prompt_id,)
            ).fetchone()
            if row is None:
                raise IngestError(
                    [
                        {
                            "path": "systemPrompt.externalPromptId",
                            "message": f"unknown prompt {sp.external_prompt_id!r} "
                            "(send content or components to create it)",
                        }
                    ]
                )
            return _PromptResult(row[0], self._component_ids(row[0]), sp.variables)
        comps = (
            sp.components
            if sp.components is not None
            else [Component(content=sp.content or "", type="system")]
        )
        return self._upsert_prompt(sp.external_prompt_id, comps, sp.variables, now, sp.prompt_id)

    def _component_ids(self, prompt_id: str) -> list[str]:
        rows = self._db.execute(
            "SELECT component_id FROM prompt_components WHERE prompt_id = ? ORDER BY position",
            (prompt_id,),
        ).fetchall()
        return [r[0] for r in rows]

    def _upsert_prompt(
        self,
        external_id: str | None,
        comps: Sequence[Component],
        variables: dict[str, str] | None,
        now: dt.datetime,
        prompt_id: str | None = None,
    ) -> _PromptResult:
        db = self._db
        template = "\n\n".join(c.content for c in comps)
        if prompt_id is None:
            prompt_id = (
                _sid("prompt-external", external_id)
                if external_id
                else _sid("prompt-content", template)
            )
        has_ph = 1 if _PLACEHOLDER.search(template) else 0
        db.execute(
            "INSERT INTO prompts (id, external_id, template, has_placeholders, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
            "template = excluded.template, has_placeholders = excluded.has_placeholders, "
            "updated_at = excluded.updated_at",
            (prompt_id, external_id, template, has_ph, _iso(now), _iso(now)),
        )
        ids: list[str] = []
        for c in comps:
            cid = c.component_id or (
                _sid("component-external", c.external_component_id)
                if c.external_component_id
                else _sid("component-content", c.content)
            )
            db.execute(
                "INSERT INTO components (id, external_id, content, name, type, source, is_dynamic) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                "content = excluded.content, name = COALESCE(excluded.name, name), "
                "type = COALESCE(excluded.type, type), source = COALESCE(excluded.source, source), "
                "is_dynamic = COALESCE(excluded.is_dynamic, is_dynamic)",
                (
                    cid,
                    c.external_component_id,
                    c.content,
                    c.name,
                    c.type,
                    c.source,
                    None if c.is_dynamic is None else int(c.is_dynamic),
                ),
            )
            ids.append(cid)
        db.execute("DELETE FROM prompt_components WHERE prompt_id = ?", (prompt_id,))
        db.executemany(
            "INSERT INTO prompt_components (prompt_id, position, component_id) VALUES (?, ?, ?)",
            [(prompt_id, n, cid) for n, cid in enumerate(ids)],
        )
        return _PromptResult(prompt_id, ids, variables or None)

    def _match_template(self, text: str) -> _PromptResult | None:
        """Match a plain-string prompt against stored templates (placeholders = wildcards)."""
        rows = self._db.execute(
            "SELECT id, template FROM prompts WHERE has_placeholders = 1 "
            "ORDER BY length(template) DESC LIMIT 200"
        ).fetchall()
        best: tuple[int, str, dict[str, str], str] | None = None
        for row in rows:
            template: str = row["template"]
            static = len(_PLACEHOLDER.sub("", template))
            if best is not None and static <= best[0]:
                continue
            if text == template:
                return _PromptResult(
                    row["id"],
                    self._component_ids(row["id"]),
                    None,
                    {
                        "matched": True,
                        "confidence": "exact",
                        "detectedVariables": {},
                        "promptId": row["id"],
                    },
                )
            m = template_regex(template).fullmatch(text)
            if m is None:
                continue
            names = {"v" + uuid.uuid5(NS, n).hex[:12]: n for n in _PLACEHOLDER.findall(template)}
            detected = {names[g]: v for g, v in m.groupdict().items()}
            best = (static, row["id"], detected, template)
        if best is None:
            return None
        static, pid, detected, template = best
        # Mostly fixed text with short values is a confident match; long free-form
        # values mean the wildcards did most of the work.
        variable_chars = sum(len(v) for v in detected.values())
        confidence = "high" if static >= variable_chars else "medium"
        return _PromptResult(
            pid,
            self._component_ids(pid),
            detected,
            {
                "matched": True,
                "confidence": confidence,
                "detectedVariables": detected,
                "promptId": pid,
            },
        )

    # -- reads -----------------------------------------------------------------------

    def get_prompt(self, prompt_id: str) -> dict[str, Any] | None:
        """A prompt with its components in order."""
        rows = self._rows("SELECT * FROM prompts WHERE id = ?", (prompt_id,))
        if not rows:
            return None
        p = rows[0]
        comps = self._rows(
            "SELECT c.* FROM prompt_components pc JOIN components c ON c.id = pc.component_id "
            "WHERE pc.prompt_id = ? ORDER BY pc.position",
            (prompt_id,),
        )
        return {
            "id": p["id"],
            "externalPromptId": p["external_id"],
            "template": p["template"],
            "createdAt": p["created_at"],
            "updatedAt": p["updated_at"],
            "components": [
                {
                    "id": c["id"],
                    "externalComponentId": c["external_id"],
                    "content": c["content"],
                    "name": c["name"],
                    "type": c["type"],
                    "source": c["source"],
                    "isDynamic": None if c["is_dynamic"] is None else bool(c["is_dynamic"]),
                    "variables": _PLACEHOLDER.findall(c["content"]),
                }
                for c in comps
            ],
        }

    def list_prompts(self) -> list[dict[str, Any]]:
        """Every prompt with components, most recently updated first."""
        ids = [r[0] for r in self._rows("SELECT id FROM prompts ORDER BY updated_at DESC")]
        return [p for p in (self.get_prompt(i) for i in ids) if p is not None]

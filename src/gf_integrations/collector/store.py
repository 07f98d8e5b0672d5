"""SQLite storage of the local collector: one file, WAL, parameterised SQL only.

All access goes through one connection guarded by one lock. SQLite serialises writers
anyway; a single lock keeps every ingest atomic (one ``BEGIN IMMEDIATE`` transaction per
request) and makes concurrent requests safe without "database is locked" retries.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..core.ids import sample_fraction
from ..schema import (
    MessageCreateRequest,
    MessageItem,
    parse_time,
)
from ..transcript import build_tree
from ._rows import IngestError
from ._rows import dump as _dump
from ._rows import iso as _iso
from ._rows import load as _load
from ._rows import now as _now
from ._rows import sid as _sid
from .outcomes import OUTCOMES_SCHEMA, OutcomesMixin
from .prompts_store import PromptsMixin, _PromptResult
from .prompts_store import fill as fill
from .prompts_store import template_regex as template_regex

__all__ = ["IngestError", "Store"]

_ROLE_TYPES = {"user": "user_message", "assistant": "assistant_message", "system": "system_message"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS organizations (
    id TEXT PRIMARY KEY,
    external_id TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    external_id TEXT NOT NULL UNIQUE,
    organization_id TEXT REFERENCES organizations(id),
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS prompts (
    id TEXT PRIMARY KEY,
    external_id TEXT UNIQUE,
    template TEXT NOT NULL,
    has_placeholders INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS components (
    id TEXT PRIMARY KEY,
    external_id TEXT,
    content TEXT NOT NULL,
    name TEXT,
    type TEXT,
    source TEXT,
    is_dynamic INTEGER
);
CREATE TABLE IF NOT EXISTS prompt_components (
    prompt_id TEXT NOT NULL REFERENCES prompts(id),
    position INTEGER NOT NULL,
    component_id TEXT NOT NULL REFERENCES components(id),
    PRIMARY KEY (prompt_id, position)
);
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    product_id TEXT NOT NULL DEFAULT '',
    external_id TEXT,
    user_id TEXT NOT NULL REFERENCES users(id),
    organization_id TEXT REFERENCES organizations(id),
    model TEXT,
    properties TEXT,
    prompt_id TEXT REFERENCES prompts(id),
    prompt_variables TEXT,
    voice_call TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS conversations_key
    ON conversations(product_id, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS conversations_updated ON conversations(updated_at);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    seq INTEGER NOT NULL,
    external_id TEXT,
    parent_id TEXT,
    role TEXT,
    message_type TEXT NOT NULL,
    content TEXT,
    context TEXT,
    input TEXT,
    output TEXT,
    tool_name TEXT,
    model TEXT,
    properties TEXT,
    voice TEXT,
    created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS messages_external
    ON messages(conversation_id, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_order ON messages(conversation_id, created_at, seq);
"""


class Store(OutcomesMixin, PromptsMixin):
    """The collector's database. ``path`` None or ``":memory:"`` keeps it in memory."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = str(path) if path is not None else ":memory:"
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=30.0
        )
        self._db.row_factory = sqlite3.Row
        with self._lock:
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA + OUTCOMES_SCHEMA)
        self._seq = self._scalar("SELECT COALESCE(MAX(seq), 0) FROM messages") or 0

    def close(self) -> None:
        """Close the connection (checkpointing the WAL)."""
        with self._lock:
            self._db.close()

    def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        with self._lock:
            row = self._db.execute(sql, params).fetchone()
        return None if row is None else row[0]

    # -- ingest ----------------------------------------------------------------------

    def ingest(self, req: MessageCreateRequest) -> dict[str, Any]:
        """Apply one validated request atomically; returns the response body.

        Raises :class:`IngestError` (nothing stored) for an unknown parent, prompt or
        conversation id.
        """
        return self._atomic(lambda: self._ingest(req))

    def _ingest(self, req: MessageCreateRequest) -> dict[str, Any]:
        db = self._db
        now = _now()
        key = req.conversation_id or f"{req.product_id or ''}\x1f{req.external_conversation_id}"
        conv_row = self._find_conversation(req)
        if req.conversation_id and conv_row is None:
            raise IngestError(
                [
                    {
                        "path": "conversationId",
                        "message": f"unknown conversation {req.conversation_id!r}",
                    }
                ]
            )
        if (
            req.sample_rate is not None
            and req.sample_rate < 1.0
            and not req.force_sample
            and sample_fraction(key) >= req.sample_rate
        ):
            # Sampled out: success, nothing stored (the same conversation always is).
            cid = conv_row["id"] if conv_row is not None else _sid("conversation", key)
            return {
                "success": True,
                "conversationId": cid,
                "messages": [],
                "systemPromptPromptId": None,
                "systemPromptComponentIds": [],
            }
        org_id = self._upsert_org(req.external_organization_id, now)
        user_id = self._upsert_user(req.external_user_id, org_id, now)
        if conv_row is None:
            cid = (
                _sid("conversation", key)
                if req.external_conversation_id
                else str(uuid.uuid4())  # productId only: every request starts a new one
            )
            db.execute(
                "INSERT INTO conversations (id, product_id, external_id, user_id, "
                "organization_id, model, properties, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    cid,
                    req.product_id or "",
                    req.external_conversation_id,
                    user_id,
                    org_id,
                    req.model,
                    _dump(req.properties),
                    _iso(now),
                    _iso(now),
                ),
            )
            props: dict[str, Any] = dict(req.properties or {})
        else:
            cid = conv_row["id"]
            props = dict(_load(conv_row["properties"]) or {})
            props.update(req.properties or {})
            db.execute(
                "UPDATE conversations SET model = COALESCE(?, model), properties = ?, "
                "organization_id = COALESCE(?, organization_id) WHERE id = ?",
                (req.model, _dump(props or None), org_id, cid),
            )

        if req.voice_call is not None:
            db.execute(
                "UPDATE conversations SET voice_call = ? WHERE id = ?",
                (_dump(req.voice_call.model_dump(by_alias=True, exclude_none=True)), cid),
            )

        prompt: _PromptResult | None = None
        if req.system_prompt is not None:
            prompt = self._system_prompt(req.system_prompt, now)
            db.execute(
                "UPDATE conversations SET prompt_id = ?, prompt_variables = ? WHERE id = ?",
                (prompt.prompt_id, _dump(prompt.variables), cid),
            )

        results = self._messages(cid, req.messages, now)
        db.execute(
            "UPDATE conversations SET updated_at = MAX(updated_at, ?) WHERE id = ?",
            (_iso(now), cid),
        )
        body: dict[str, Any] = {
            "success": True,
            "conversationId": cid,
            "messages": results,
            "systemPromptPromptId": prompt.prompt_id if prompt else None,
            "systemPromptComponentIds": prompt.component_ids if prompt else [],
        }
        if prompt is not None and prompt.variables:
            body["promptVariables"] = prompt.variables
        if prompt is not None and prompt.template_match is not None:
            body["templateMatch"] = prompt.template_match
        return body

    def _find_conversation(self, req: MessageCreateRequest) -> sqlite3.Row | None:
        if req.conversation_id:
            row: sqlite3.Row | None = self._db.execute(
                "SELECT * FROM conversations WHERE id = ?", (req.conversation_id,)
            ).fetchone()
            return row
        if req.external_conversation_id:
            row = self._db.execute(
                "SELECT * FROM conversations WHERE product_id = ? AND external_id = ?",
                (req.product_id or "", req.external_conversation_id),
            ).fetchone()
            return row
        return None

    def _upsert_org(self, external_id: str | None, now: dt.datetime) -> str | None:
        if not external_id:
            return None
        oid = _sid("organization", external_id)
        self._db.execute(
            "INSERT OR IGNORE INTO organizations (id, external_id, created_at) VALUES (?, ?, ?)",
            (oid, external_id, _iso(now)),
        )
        return oid

    def _upsert_user(self, external_id: str, org_id: str | None, now: dt.datetime) -> str:
        uid = _sid("user", external_id)
        self._db.execute(
            "INSERT INTO users (id, external_id, organization_id, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(external_id) DO UPDATE SET "
            "organization_id = COALESCE(excluded.organization_id, users.organization_id)",
            (uid, external_id, org_id, _iso(now)),
        )
        return uid

    def _messages(
        self, cid: str, items: list[MessageItem], now: dt.datetime
    ) -> list[dict[str, Any]]:
        db = self._db
        results: list[dict[str, Any]] = []
        by_external: dict[str, str] = {}  # within this request
        created_ids: set[str] = set()
        # Sequential stamps start at "now", or just after the conversation's latest
        # server-time message when requests come faster than the clock ticks. Explicit
        # future createdAt values do not drag later stamps along.
        last = db.execute(
            "SELECT MAX(created_at) FROM messages WHERE conversation_id = ? AND created_at <= ?",
            (cid, _iso(now + dt.timedelta(seconds=1))),
        ).fetchone()[0]
        clock = now
        if last is not None:
            last_dt = parse_time(last)
            if last_dt is not None and last_dt >= clock:
                clock = last_dt + dt.timedelta(microseconds=1)
        problems: list[dict[str, str]] = []
        for i, item in enumerate(items):
            mtype = item.message_type or _ROLE_TYPES[item.role or "user"]
            ext = item.external_message_id
            if ext is not None:
                existing = by_external.get(ext)
                if existing is None:
                    row = db.execute(
                        "SELECT id FROM messages WHERE conversation_id = ? AND external_id = ?",
                        (cid, ext),
                    ).fetchone()
                    existing = row[0] if row else None
                if existing is not None:
                    results.append(
                        {
                            "messageId": existing,
                            "messageType": mtype,
                            "externalMessageId": ext,
                            "status": "deduplicated",
                        }
                    )
                    continue
            parent_id: str | None = None
            if item.parent_external_message_id is not None:
                parent_id = by_external.get(item.parent_external_message_id)
                if parent_id is None:
                    row = db.execute(
                        "SELECT id FROM messages WHERE conversation_id = ? AND external_id = ?",
                        (cid, item.parent_external_message_id),
                    ).fetchone()
                    parent_id = row[0] if row else None
                if parent_id is None:
                    problems.append(
                        {
                            "path": f"messages.{i}.parentExternalMessageId",
                            "message": "unknown parent message "
                            f"{item.parent_external_message_id!r} in this conversation",
                        }
                    )
                    continue
            elif item.parent_message_id is not None:
                parent_id = item.parent_message_id
                if parent_id not in created_ids:
                    row = db.execute(
                        "SELECT id FROM messages WHERE conversation_id = ? AND id = ?",
                        (cid, parent_id),
                    ).fetchone()
                    if row is None:
                        problems.append(
                            {
                                "path": f"messages.{i}.parentMessageId",
                                "message": f"unknown parent message {parent_id!r} "
                                "in this conversation",
                            }
                        )
                        continue
            if item.created_at is not None:
                moment = parse_time(item.created_at)
                if moment is None:
                    problems.append(
                        {
                            "path": f"messages.{i}.createdAt",
                            "message": "not an ISO-8601 date-time",
                        }
                    )
                    continue
                stamp = _iso(moment)
            else:
                stamp = _iso(clock)
                clock += dt.timedelta(milliseconds=1)
            mid = str(uuid.uuid4())
            self._seq += 1
            db.execute(
                "INSERT INTO messages (id, conversation_id, seq, external_id, parent_id, role, "
                "message_type, content, context, input, output, tool_name, model, properties, "
                "voice, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    mid,
                    cid,
                    self._seq,
                    ext,
                    parent_id,
                    item.role,
                    mtype,
                    item.content,
                    item.context,
                    _dump(item.input),
                    _dump(item.output),
                    item.tool_name,
                    item.model,
                    _dump(item.properties),
                    _dump(item.voice.model_dump(by_alias=True, exclude_none=True))
                    if item.voice
                    else None,
                    stamp,
                ),
            )
            created_ids.add(mid)
            if ext is not None:
                by_external[ext] = mid
            results.append(
                {
                    "messageId": mid,
                    "messageType": mtype,
                    "externalMessageId": ext,
                    "status": "created",
                }
            )
        if problems:
            # The sequence counter may have advanced; gaps are harmless.
            raise IngestError(problems)
        return results

    # -- reads -----------------------------------------------------------------------

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def list_conversations(
        self,
        *,
        external_user_id: str | None = None,
        external_organization_id: str | None = None,
        product_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> dict[str, Any]:
        """Conversations, newest activity first, with filters and pagination."""
        where: list[str] = []
        params: list[Any] = []
        if external_user_id is not None:
            where.append("u.external_id = ?")
            params.append(external_user_id)
        if external_organization_id is not None:
            where.append("o.external_id = ?")
            params.append(external_organization_id)
        if product_id is not None:
            where.append("c.product_id = ?")
            params.append(product_id)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        base = (
            "FROM conversations c JOIN users u ON u.id = c.user_id "
            "LEFT JOIN organizations o ON o.id = c.organization_id " + clause
        )
        limit = max(1, min(int(limit), 500))
        offset = max(0, int(offset))
        total = self._rows("SELECT COUNT(*) " + base, params)[0][0]
        rows = self._rows(
            "SELECT c.*, u.external_id AS user_external_id, o.external_id AS org_external_id, "
            "(SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id) AS message_count, "
            "(SELECT MAX(m.created_at) FROM messages m WHERE m.conversation_id = c.id) AS last_at, "
            "(SELECT m.content FROM messages m WHERE m.conversation_id = c.id AND "
            " m.message_type = 'user_message' ORDER BY m.created_at, m.seq LIMIT 1) AS first_user "
            + base
            + " ORDER BY c.updated_at DESC, c.rowid DESC LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return {
            "conversations": [self._conversation_dict(r) for r in rows],
            "total": total,
            "limit": limit,
            "offset": offset,
        }

    @staticmethod
    def _conversation_dict(r: sqlite3.Row) -> dict[str, Any]:
        keys = r.keys()
        out: dict[str, Any] = {
            "id": r["id"],
            "externalConversationId": r["external_id"],
            "productId": r["product_id"] or None,
            "externalUserId": r["user_external_id"] if "user_external_id" in keys else None,
            "externalOrganizationId": r["org_external_id"] if "org_external_id" in keys else None,
            "model": r["model"],
            "properties": _load(r["properties"]),
            "promptId": r["prompt_id"],
            "promptVariables": _load(r["prompt_variables"]),
            "voiceCall": _load(r["voice_call"]),
            "createdAt": r["created_at"],
            "updatedAt": r["updated_at"],
        }
        if "message_count" in keys:
            out["messageCount"] = r["message_count"]
            out["lastMessageAt"] = r["last_at"]
            out["preview"] = (r["first_user"] or "")[:200] or None
        return out

    def find_conversation_id(
        self, external_conversation_id: str, product_id: str | None = None
    ) -> str | None:
        """The internal id for an external conversation id (any product if not given)."""
        if product_id is not None:
            rows = self._rows(
                "SELECT id FROM conversations WHERE external_id = ? AND product_id = ?",
                (external_conversation_id, product_id),
            )
        else:
            rows = self._rows(
                "SELECT id FROM conversations WHERE external_id = ? ORDER BY created_at",
                (external_conversation_id,),
            )
        return rows[0][0] if rows else None

    def get_conversation(self, conversation_id: str) -> dict[str, Any] | None:
        """One conversation with its flat ``messages`` (in order), ``tree``, ``prompt``,
        ``ratings`` and ``events``."""
        rows = self._rows(
            "SELECT c.*, u.external_id AS user_external_id, o.external_id AS org_external_id "
            "FROM conversations c JOIN users u ON u.id = c.user_id "
            "LEFT JOIN organizations o ON o.id = c.organization_id WHERE c.id = ?",
            (conversation_id,),
        )
        if not rows:
            return None
        conv = self._conversation_dict(rows[0])
        messages = self.messages_of(conversation_id)
        conv["messages"] = messages
        conv["tree"] = build_tree(messages)
        conv["prompt"] = self.get_prompt(conv["promptId"]) if conv["promptId"] else None
        conv["ratings"] = self.ratings_of(conversation_id)
        conv["events"] = self.events_of(conversation_id)
        return conv

    def messages_of(self, conversation_id: str) -> list[dict[str, Any]]:
        """Messages of a conversation in time order (ties: arrival order)."""
        rows = self._rows(
            "SELECT * FROM messages WHERE conversation_id = ? ORDER BY created_at, seq",
            (conversation_id,),
        )
        return [
            {
                "id": r["id"],
                "externalMessageId": r["external_id"],
                "parentId": r["parent_id"],
                "role": r["role"],
                "messageType": r["message_type"],
                "content": r["content"],
                "context": r["context"],
                "input": _load(r["input"]),
                "output": _load(r["output"]),
                "toolName": r["tool_name"],
                "model": r["model"],
                "properties": _load(r["properties"]),
                "voice": _load(r["voice"]),
                "createdAt": r["created_at"],
            }
            for r in rows
        ]

    def counts(self) -> dict[str, int]:
        """Row counts per table (tests, the demo summary)."""
        out = {}
        for table in (
            "organizations",
            "users",
            "conversations",
            "messages",
            "prompts",
            "components",
            "ratings",
            "events",
        ):
            out[table] = int(self._rows(f"SELECT COUNT(*) FROM {table}")[0][0])  # fixed names
        return out

"""Collector storage for feedback and outcomes: ratings, business events, user and
organization profiles (``POST /ratings``, ``/events``, ``/users``, ``/organizations``).

A mixin of :class:`~gf_integrations.collector.store.Store`: same connection, same lock,
one ``BEGIN IMMEDIATE`` transaction per request. Semantics kept from the Greenflash API:

* A rating targets one message (``messageId`` / ``externalMessageId``) or one
  conversation (``conversationId`` / ``externalConversationId``) of ``productId``; an
  unknown target is a 400 with details, like an unknown parent in ``/messages``. One rating
  is kept per target: a later ``ratedAt`` replaces it, a resend (same or older ``ratedAt``)
  changes nothing, so retries never double.
* An event is stored once per ``insertId`` (a resend returns the same ``eventId``);
  ``sampleRate`` below 1 keeps a deterministic share by event type and organization
  unless ``forceSample``. Users and organizations named by external id are created.
* ``/users`` and ``/organizations`` create or update: given fields replace, properties
  merge; ``anonymized`` clears name, email and phone.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ..core.ids import sample_fraction
from ..schema import (
    EventCreateRequest,
    OrganizationCreateRequest,
    RatingLogRequest,
    UserCreateRequest,
    parse_time,
)
from ._rows import IngestError, dump, iso, load, now, sid

__all__ = ["OUTCOMES_SCHEMA", "OutcomesMixin"]

T = TypeVar("T")

OUTCOMES_SCHEMA = """
CREATE TABLE IF NOT EXISTS ratings (
    id TEXT PRIMARY KEY,
    product_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    message_id TEXT REFERENCES messages(id),
    rating REAL NOT NULL,
    rating_min REAL NOT NULL,
    rating_max REAL NOT NULL,
    feedback TEXT,
    rated_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ratings_conversation ON ratings(conversation_id);
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    product_id TEXT NOT NULL,
    insert_id TEXT,
    event_type TEXT NOT NULL,
    value TEXT NOT NULL,
    value_type TEXT,
    influence TEXT,
    quality_impact_score REAL,
    conversation_id TEXT REFERENCES conversations(id),
    external_conversation_id TEXT,
    user_id TEXT REFERENCES users(id),
    organization_id TEXT REFERENCES organizations(id),
    properties TEXT,
    event_at TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS events_insert
    ON events(product_id, insert_id) WHERE insert_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_conversation ON events(conversation_id);
CREATE INDEX IF NOT EXISTS events_external_conversation
    ON events(product_id, external_conversation_id);
CREATE TABLE IF NOT EXISTS user_profiles (
    user_id TEXT PRIMARY KEY REFERENCES users(id),
    name TEXT,
    email TEXT,
    phone TEXT,
    anonymized INTEGER NOT NULL DEFAULT 0,
    properties TEXT,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS organization_profiles (
    organization_id TEXT PRIMARY KEY REFERENCES organizations(id),
    name TEXT,
    properties TEXT,
    updated_at TEXT NOT NULL
);
"""


def _unknown(path: str, what: str) -> IngestError:
    return IngestError([{"path": path, "message": f"unknown {what}"}])


class OutcomesMixin:
    """Ratings, events and profiles; mixed into the collector's ``Store``."""

    if TYPE_CHECKING:  # provided by Store
        _db: sqlite3.Connection
        _lock: threading.Lock

        def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]: ...
        def _upsert_org(self, external_id: str | None, now: dt.datetime) -> str | None: ...
        def _upsert_user(self, external_id: str, org_id: str | None, now: dt.datetime) -> str: ...

    def _atomic(self, apply: Callable[[], T]) -> T:
        """Run ``apply`` in one ``BEGIN IMMEDIATE`` transaction (rolled back if it raises)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = apply()
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return result

    # -- ratings -----------------------------------------------------------------------

    def ingest_rating(self, req: RatingLogRequest) -> dict[str, Any]:
        """Store (or update) one rating; raises :class:`IngestError` for an unknown target."""
        return self._atomic(lambda: self._rating(req))

    def _rating_target(self, req: RatingLogRequest) -> tuple[str, str | None]:
        """(internal conversation id, internal message id or None) of the rated thing."""
        db = self._db
        if req.message_id or req.external_message_id:
            sql = (
                "SELECT m.id, m.conversation_id FROM messages m "
                "JOIN conversations c ON c.id = m.conversation_id WHERE c.product_id = ? "
            )
            params: list[Any] = [req.product_id]
            if req.message_id:
                sql += "AND m.id = ? "
                params.append(req.message_id)
            else:
                sql += "AND m.external_id = ? "
                params.append(req.external_message_id)
            if req.conversation_id:
                sql += "AND c.id = ? "
                params.append(req.conversation_id)
            elif req.external_conversation_id:
                sql += "AND c.external_id = ? "
                params.append(req.external_conversation_id)
            rows = db.execute(sql + "LIMIT 2", params).fetchall()
            path = "messageId" if req.message_id else "externalMessageId"
            if not rows:
                raise _unknown(path, f"message {req.message_id or req.external_message_id!r}")
            if len(rows) > 1:
                raise IngestError(
                    [
                        {
                            "path": path,
                            "message": "the id names messages in several conversations; "
                            "give externalConversationId too",
                        }
                    ]
                )
            return rows[0][1], rows[0][0]
        if req.conversation_id:
            row = db.execute(
                "SELECT id FROM conversations WHERE id = ? AND product_id = ?",
                (req.conversation_id, req.product_id),
            ).fetchone()
            if row is None:
                raise _unknown("conversationId", f"conversation {req.conversation_id!r}")
            return row[0], None
        row = db.execute(
            "SELECT id FROM conversations WHERE external_id = ? AND product_id = ?",
            (req.external_conversation_id, req.product_id),
        ).fetchone()
        if row is None:
            raise _unknown(
                "externalConversationId", f"conversation {req.external_conversation_id!r}"
            )
        return row[0], None

    def _rating(self, req: RatingLogRequest) -> dict[str, Any]:
        cid, mid = self._rating_target(req)
        stamp = now()
        moment = parse_time(req.rated_at) if req.rated_at else stamp
        rated_at = iso(moment or stamp)
        rid = sid("rating", cid, mid or "")
        # one rating per target: a later ratedAt replaces it; a resend changes nothing
        self._db.execute(
            "INSERT INTO ratings (id, product_id, conversation_id, message_id, rating, "
            "rating_min, rating_max, feedback, rated_at, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
            "rating = excluded.rating, rating_min = excluded.rating_min, "
            "rating_max = excluded.rating_max, feedback = excluded.feedback, "
            "rated_at = excluded.rated_at, updated_at = excluded.updated_at "
            "WHERE excluded.rated_at > ratings.rated_at",
            (
                rid,
                req.product_id,
                cid,
                mid,
                req.rating,
                req.rating_min,
                req.rating_max,
                req.feedback,
                rated_at,
                iso(stamp),
                iso(stamp),
            ),
        )
        return {"success": True}

    # -- events ------------------------------------------------------------------------

    def ingest_event(self, req: EventCreateRequest) -> dict[str, Any]:
        """Store one event (once per ``insertId``); returns ``{success, eventId}``."""
        return self._atomic(lambda: self._event(req))

    def _event(self, req: EventCreateRequest) -> dict[str, Any]:
        db = self._db
        if req.insert_id is not None:
            row = db.execute(
                "SELECT id FROM events WHERE product_id = ? AND insert_id = ?",
                (req.product_id, req.insert_id),
            ).fetchone()
            if row is not None:
                return {"success": True, "eventId": row[0]}
        event_id = (
            sid("event", req.product_id, req.insert_id) if req.insert_id else str(uuid.uuid4())
        )
        org_key = req.external_organization_id or req.organization_id or ""
        if (
            req.sample_rate is not None
            and req.sample_rate < 1.0
            and not req.force_sample
            and sample_fraction(f"{req.event_type}\x1f{org_key}") >= req.sample_rate
        ):
            return {"success": True, "eventId": event_id}  # sampled out: nothing stored
        stamp = now()
        cid = None
        if req.conversation_id:
            row = db.execute(
                "SELECT id FROM conversations WHERE id = ? AND product_id = ?",
                (req.conversation_id, req.product_id),
            ).fetchone()
            if row is None:
                raise _unknown("conversationId", f"conversation {req.conversation_id!r}")
            cid = row[0]
        elif req.external_conversation_id:
            row = db.execute(
                "SELECT id FROM conversations WHERE external_id = ? AND product_id = ?",
                (req.external_conversation_id, req.product_id),
            ).fetchone()
            cid = row[0] if row is not None else None  # linked when the conversation comes
        org_id = self._known("organizations", req.organization_id, "organizationId")
        org_id = org_id or self._upsert_org(req.external_organization_id, stamp)
        user_id = self._known("users", req.user_id, "userId")
        if user_id is None and req.external_user_id:
            user_id = self._upsert_user(req.external_user_id, org_id, stamp)
        moment = parse_time(req.event_at) if req.event_at else stamp
        db.execute(
            "INSERT INTO events (id, product_id, insert_id, event_type, value, value_type, "
            "influence, quality_impact_score, conversation_id, external_conversation_id, "
            "user_id, organization_id, properties, event_at, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event_id,
                req.product_id,
                req.insert_id,
                req.event_type,
                req.value,
                req.value_type,
                req.influence,
                req.quality_impact_score,
                cid,
                req.external_conversation_id,
                user_id,
                org_id,
                dump(req.properties),
                iso(moment or stamp),
                iso(stamp),
            ),
        )
        return {"success": True, "eventId": event_id}

    def _known(self, table: str, internal_id: str | None, path: str) -> str | None:
        """An internal user/organization id given by the client must exist."""
        if internal_id is None:
            return None
        # table is one of two fixed names, never client input
        row = self._db.execute(f"SELECT id FROM {table} WHERE id = ?", (internal_id,)).fetchone()
        if row is None:
            raise _unknown(path, f"{table[:-1]} {internal_id!r}")
        return str(row[0])

    # -- users and organizations -------------------------------------------------------

    def ingest_user(self, req: UserCreateRequest) -> dict[str, Any]:
        """Create or update a user's profile; returns ``{success, participant}``."""
        return self._atomic(lambda: self._user(req))

    def _user(self, req: UserCreateRequest) -> dict[str, Any]:
        stamp = now()
        org_id = self._known("organizations", req.organization_id, "organizationId")
        org_id = org_id or self._upsert_org(req.external_organization_id, stamp)
        uid = self._upsert_user(req.external_user_id, org_id, stamp)
        old = self._db.execute("SELECT * FROM user_profiles WHERE user_id = ?", (uid,)).fetchone()
        props = dict(load(old["properties"]) or {}) if old is not None else {}
        props.update(req.properties or {})
        anonymized = (
            bool(req.anonymized)
            if req.anonymized is not None
            else bool(old is not None and old["anonymized"])
        )

        def field(name: str) -> Any:
            if anonymized:
                return None
            value = getattr(req, name)
            return value if value is not None else (old[name] if old is not None else None)

        self._db.execute(
            "INSERT OR REPLACE INTO user_profiles (user_id, name, email, phone, anonymized, "
            "properties, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                uid,
                field("name"),
                field("email"),
                field("phone"),
                int(anonymized),
                dump(props),
                iso(stamp),
            ),
        )
        participant = self._participant(uid)
        assert participant is not None
        return {"success": True, "participant": participant}

    def _participant(self, uid: str) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT u.id, u.external_id, u.created_at, o.id AS org_id, "
            "o.external_id AS org_external_id, p.name, p.email, p.phone, p.anonymized, "
            "p.properties, p.updated_at FROM users u "
            "LEFT JOIN organizations o ON o.id = u.organization_id "
            "LEFT JOIN user_profiles p ON p.user_id = u.id WHERE u.id = ?",
            (uid,),
        ).fetchone()
        if row is None:
            return None
        return {
            "id": row["id"],
            "externalId": row["external_id"],
            "anonymized": bool(row["anonymized"]),
            "externalOrganizationId": row["org_external_id"],
            "organizationId": row["org_id"],
            "name": row["name"],
            "email": row["email"],
            "phone": row["phone"],
            "properties": load(row["properties"]) or {},
            "createdAt": row["created_at"],
            "updatedAt": row["updated_at"] or row["created_at"],
        }

    def ingest_organization(self, req: OrganizationCreateRequest) -> dict[str, Any]:
        """Create or update an organization; returns ``{success, organization}``."""
        return self._atomic(lambda: self._organization(req))

    def _organization(self, req: OrganizationCreateRequest) -> dict[str, Any]:
        stamp = now()
        oid = self._upsert_org(req.external_organization_id, stamp)
        assert oid is not None  # external_organization_id is required (min_length=1)
        old = self._db.execute(
            "SELECT * FROM organization_profiles WHERE organization_id = ?", (oid,)
        ).fetchone()
        props = dict(load(old["properties"]) or {}) if old is not None else {}
        props.update(req.properties or {})
        name = req.name if req.name is not None else (old["name"] if old is not None else None)
        self._db.execute(
            "INSERT OR REPLACE INTO organization_profiles (organization_id, name, properties, "
            "updated_at) VALUES (?, ?, ?, ?)",
            (oid, name, dump(props), iso(stamp)),
        )
        organization = self._organization_dict(oid)
        assert organization is not None
        return {"success": True, "organization": organization}

    def _organization_dict(self, oid: str) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT o.id, o.external_id, o.created_at, p.name, p.properties, p.updated_at "
            "FROM organizations o LEFT JOIN organization_profiles p ON p.organization_id = o.id "
            "WHERE o.id = ?",
            (oid,),
        ).fetchone()
        if row is None:
            return None
        return {
            "id": row["id"],
            "externalId": row["external_id"],
            "name": row["name"],
            "properties": load(row["properties"]) or {},
            "createdAt": row["created_at"],
            "updatedAt": row["updated_at"] or row["created_at"],
        }

    # -- reads -------------------------------------------------------------------------

    def get_user(self, external_user_id: str) -> dict[str, Any] | None:
        """A user's profile (the ``participant`` shape), or None."""
        with self._lock:
            return self._participant(sid("user", external_user_id))

    def get_organization(self, external_organization_id: str) -> dict[str, Any] | None:
        """An organization (the ``organization`` shape), or None."""
        with self._lock:
            return self._organization_dict(sid("organization", external_organization_id))

    def ratings_of(self, conversation_id: str) -> list[dict[str, Any]]:
        """Ratings of a conversation and of its messages, oldest first."""
        rows = self._rows(
            "SELECT r.*, m.external_id AS message_external_id FROM ratings r "
            "LEFT JOIN messages m ON m.id = r.message_id "
            "WHERE r.conversation_id = ? ORDER BY r.rated_at, r.rowid",
            (conversation_id,),
        )
        return [
            {
                "id": r["id"],
                "messageId": r["message_id"],
                "externalMessageId": r["message_external_id"],
                "rating": r["rating"],
                "ratingMin": r["rating_min"],
                "ratingMax": r["rating_max"],
                "feedback": r["feedback"],
                "ratedAt": r["rated_at"],
            }
            for r in rows
        ]

    def events_of(self, conversation_id: str) -> list[dict[str, Any]]:
        """Events linked to a conversation (by id, or by its external id), in time order."""
        rows = self._rows(
            "SELECT e.*, u.external_id AS user_external_id, o.external_id AS org_external_id "
            "FROM events e JOIN conversations c ON c.id = ? "
            "LEFT JOIN users u ON u.id = e.user_id "
            "LEFT JOIN organizations o ON o.id = e.organization_id "
            "WHERE e.conversation_id = c.id OR (e.conversation_id IS NULL AND "
            "e.product_id = c.product_id AND e.external_conversation_id = c.external_id) "
            "ORDER BY e.event_at, e.rowid",
            (conversation_id,),
        )
        return [
            {
                "id": r["id"],
                "insertId": r["insert_id"],
                "eventType": r["event_type"],
                "value": r["value"],
                "valueType": r["value_type"],
                "influence": r["influence"],
                "qualityImpactScore": r["quality_impact_score"],
                "externalUserId": r["user_external_id"],
                "externalOrganizationId": r["org_external_id"],
                "properties": load(r["properties"]),
                "eventAt": r["event_at"],
            }
            for r in rows
        ]

"""The store's named migrations, one list per backend (append only; never edit one).

Design notes shared by both:
- Idempotency: `UNIQUE (owner, image_set_hash)` and `UNIQUE (owner, idempotency_key)`
  (owner NULL = single-user, folded to '' so the constraint bites).
- Deleting a study cascades to images, interpretation, messages and jobs; audit events
  have no foreign key (they outlive the study) and triggers refuse UPDATE/DELETE.
- Jobs carry a lease (`lease_owner`, `lease_expires_at`) and an attempts counter.
"""

from __future__ import annotations

from medlens.store.migrate import PgStep, SqliteStep
from medlens.store.schema_audit import AUDIT_CHAIN_MIGRATION, pg_audit_chain, sqlite_audit_chain
from medlens.store.schema_delivery import DELIVERY_001, DELIVERY_001_SQL
from medlens.store.schema_identity import IDENTITY_001, IDENTITY_001_SQL
from medlens.store.schema_integration_state import (
    INTEGRATION_STATE_001,
    INTEGRATION_STATE_001_SQL,
)
from medlens.store.schema_probe import PROBE_001, PROBE_001_SQL
from medlens.store.schema_review import PG_REVIEW_001, SQLITE_REVIEW_001
from medlens.store.schema_sso import SSO_001, SSO_001_SQL
from medlens.store.schema_users import USERS_001_PG, USERS_001_SQLITE


def _shared_tables(*, ts: str, json: str, row_id: str, job_seq: str, real: str) -> str:
    """The tables both backends create in store_001, in the backend's column types.

    Filled in, the text is exactly what each backend's store_001 always ran.
    """
    return f"""
        CREATE TABLE studies (
            id TEXT PRIMARY KEY,
            created_at {ts} NOT NULL,
            context {json} NOT NULL,
            owner_key TEXT NOT NULL DEFAULT '',
            owner TEXT,
            idempotency_key TEXT,
            image_set_hash TEXT NOT NULL,
            UNIQUE (owner_key, image_set_hash),
            UNIQUE (owner_key, idempotency_key)
        );
        CREATE INDEX studies_created ON studies (created_at);
        CREATE TABLE images (
            id {row_id},
            study_id TEXT NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            pixel_sha256 TEXT NOT NULL,
            format TEXT NOT NULL,
            filename TEXT NOT NULL,
            metadata {json} NOT NULL,
            UNIQUE (study_id, position)
        );
        CREATE INDEX images_sha256 ON images (sha256);
        CREATE TABLE interpretations (
            study_id TEXT PRIMARY KEY REFERENCES studies (id) ON DELETE CASCADE,
            job_id TEXT,
            data {json} NOT NULL,
            updated_at {ts} NOT NULL
        );
        CREATE TABLE messages (
            study_id TEXT NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            role TEXT NOT NULL,
            content TEXT NOT NULL,
            created_at {ts} NOT NULL,
            job_id TEXT,
            PRIMARY KEY (study_id, seq)
        );
        CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            seq {job_seq},
            study_id TEXT REFERENCES studies (id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
            progress {real} NOT NULL DEFAULT 0,
            stage TEXT NOT NULL DEFAULT '',
            payload {json} NOT NULL,
            result {json},
            error TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            max_attempts INTEGER NOT NULL DEFAULT 3,
            created_at {ts} NOT NULL,
            updated_at {ts} NOT NULL,
            lease_owner TEXT,
            lease_expires_at {ts}
        );
        CREATE INDEX jobs_claim ON jobs (status, seq);
        CREATE INDEX jobs_study ON jobs (study_id);
        CREATE TABLE audit_events (
            id {row_id},
            at {ts} NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            study_id TEXT,
            outcome TEXT NOT NULL,
            detail {json} NOT NULL
        );
        CREATE INDEX audit_study ON audit_events (study_id);"""


_SQLITE_TYPES = {
    "ts": "TEXT",
    "json": "TEXT",
    "row_id": "INTEGER PRIMARY KEY AUTOINCREMENT",
    "job_seq": "INTEGER NOT NULL",
    "real": "REAL",
}
_PG_TYPES = {
    "ts": "TIMESTAMPTZ",
    "json": "JSONB",
    "row_id": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    "job_seq": "BIGINT GENERATED ALWAYS AS IDENTITY",
    "real": "DOUBLE PRECISION",
}

SQLITE_MIGRATIONS: list[tuple[str, SqliteStep]] = [
    (
        "store_001_initial",
        _shared_tables(**_SQLITE_TYPES)
        + """
        CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
        BEGIN
            SELECT RAISE(ABORT, 'audit_events is append-only');
        END;
        CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
        BEGIN
            SELECT RAISE(ABORT, 'audit_events is append-only');
        END;
        """,
    ),
    (AUDIT_CHAIN_MIGRATION, sqlite_audit_chain),
    ("users_001_users_tokens_ownership", USERS_001_SQLITE),
    ("review_001_versions_signatures_addenda", SQLITE_REVIEW_001),
    (PROBE_001, PROBE_001_SQL),
    (SSO_001, SSO_001_SQL),
    (INTEGRATION_STATE_001, INTEGRATION_STATE_001_SQL),
    (IDENTITY_001, IDENTITY_001_SQL),
    (DELIVERY_001, DELIVERY_001_SQL),
]

PG_MIGRATIONS: list[tuple[str, PgStep]] = [
    (
        "store_001_initial",
        _shared_tables(**_PG_TYPES)
        + """
        CREATE FUNCTION medlens_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit_events is append-only';
        END;
        $$;
        CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
            FOR EACH ROW EXECUTE FUNCTION medlens_audit_append_only();
        CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
            FOR EACH STATEMENT EXECUTE FUNCTION medlens_audit_append_only();
        """,
    ),
    (AUDIT_CHAIN_MIGRATION, pg_audit_chain),
    ("users_001_users_tokens_ownership", USERS_001_PG),
    ("review_001_versions_signatures_addenda", PG_REVIEW_001),
    (PROBE_001, PROBE_001_SQL),
    (SSO_001, SSO_001_SQL),
    (INTEGRATION_STATE_001, INTEGRATION_STATE_001_SQL),
    (IDENTITY_001, IDENTITY_001_SQL),
    (DELIVERY_001, DELIVERY_001_SQL),
]

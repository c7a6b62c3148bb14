"""Migration audit_002_hash_chain: `prev_hash`/`entry_hash` on audit_events, old rows chained.

The append-only triggers of store_001 refuse the UPDATE that chains existing rows, so
each step lifts them for its own transaction only (SQLite: drop and recreate; PostgreSQL:
DISABLE/ENABLE, which also holds an exclusive lock on the table until commit). After
it, a row without hashes is refused (SQLite: trigger; PostgreSQL: NOT NULL), and a
UNIQUE index on `prev_hash` makes a fork (two entries after the same one) impossible
even for a writer that skipped the chain lock.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from medlens.store.audit_chain import backfill

AUDIT_CHAIN_MIGRATION = "audit_002_hash_chain"

_SQLITE_NO_UPDATE = """
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END"""

_SQLITE_HASH_REQUIRED = """
CREATE TRIGGER audit_events_hash_required BEFORE INSERT ON audit_events
WHEN NEW.prev_hash IS NULL OR NEW.entry_hash IS NULL
BEGIN
    SELECT RAISE(ABORT, 'audit_events rows need prev_hash and entry_hash');
END"""


def sqlite_audit_chain(conn: sqlite3.Connection) -> None:
    """SQLite step (inside the migration's BEGIN IMMEDIATE)."""
    conn.execute("ALTER TABLE audit_events ADD COLUMN prev_hash TEXT")
    conn.execute("ALTER TABLE audit_events ADD COLUMN entry_hash TEXT")
    conn.execute("DROP TRIGGER audit_events_no_update")
    backfill(conn, "?")
    conn.execute(_SQLITE_NO_UPDATE)
    conn.execute(_SQLITE_HASH_REQUIRED)
    conn.execute("CREATE UNIQUE INDEX audit_chain_prev ON audit_events (prev_hash)")


def pg_audit_chain(conn: Any) -> None:
    """PostgreSQL step (psycopg connection inside the migration's transaction)."""
    conn.execute("ALTER TABLE audit_events ADD COLUMN prev_hash TEXT, ADD COLUMN entry_hash TEXT")
    conn.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_change")
    backfill(conn, "%s")
    conn.execute("ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_change")
    conn.execute(
        "ALTER TABLE audit_events ALTER COLUMN prev_hash SET NOT NULL,"
        " ALTER COLUMN entry_hash SET NOT NULL"
    )
    conn.execute("CREATE UNIQUE INDEX audit_chain_prev ON audit_events (prev_hash)")

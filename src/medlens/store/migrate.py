"""Named migrations as a plain list, recorded in a `schema_migrations` table.

In the style of simonw/llm: a migration is `(name, step)` where `step` is either a SQL
script (one or more statements separated by `;`) or a function that takes the open
connection. Each migration runs in its own transaction together with the row that
records it, so a crash leaves it either fully applied or not at all. Names are
permanent: never rename or edit an applied migration; add a new one instead.

Other parts of MedLens (e.g. the case library) add their own tables to the same
database by calling these functions with their own, distinctly prefixed names.

Several processes may migrate at once (workers starting together): SQLite serialises
them with `BEGIN IMMEDIATE` and the "already applied?" check happens inside that
transaction; PostgreSQL uses a transaction-scoped advisory lock for the same effect.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

SqliteStep = Callable[[sqlite3.Connection], None] | str
PgStep = Callable[[Any], None] | str  # Any = psycopg.Connection (psycopg is optional)

_TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
)
# Arbitrary constant: the advisory lock key MedLens migrations take on PostgreSQL.
PG_MIGRATION_LOCK_KEY = 0x4D45444C454E53  # "MEDLENS"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def split_sql(script: str) -> list[str]:
    """Split a SQL script into complete statements (trigger bodies stay whole)."""
    statements: list[str] = []
    buf = ""
    # Cut at every ';' and let SQLite say when a statement is complete: a ';' inside a
    # string literal or a trigger body does not end the statement.
    for piece in script.split(";"):
        buf += piece + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip().strip(";").strip():
                statements.append(buf.strip())
            buf = ""
    rest = buf[:-1].strip()  # drop the ';' added after the last piece
    if rest:
        statements.append(rest)
    return statements


def _check_names(migrations: Sequence[tuple[str, Any]]) -> None:
    seen: set[str] = set()
    for name, _ in migrations:
        if not name or name in seen:
            raise ValueError(f"migration names must be unique and non-empty: {name!r}")
        seen.add(name)


def apply_sqlite_migrations(
    conn: sqlite3.Connection,
    migrations: Sequence[tuple[str, SqliteStep]],
) -> list[str]:
    """Apply the migrations not yet recorded, in list order; return the names applied.

    Idempotent: calling it again applies nothing. `conn` must not be inside an open
    transaction. Statements are executed one by one (never `executescript`, which
    would commit behind our back), so a failing migration rolls back completely.
    """
    _check_names(migrations)
    if conn.in_transaction:
        raise RuntimeError("apply_sqlite_migrations needs a connection outside a transaction")
    conn.execute(_TABLE_SQL)
    conn.commit()
    applied: list[str] = []
    for name, step in migrations:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if _apply_one(conn, name, step, "?", partial(_run_sqlite_script, conn)):
                applied.append(name)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
    return applied


def apply_pg_migrations(conn: Any, migrations: Sequence[tuple[str, PgStep]]) -> list[str]:
    """PostgreSQL twin of `apply_sqlite_migrations` (psycopg 3 connection).

    Each migration runs in its own transaction holding an advisory lock, so concurrent
    callers apply each migration exactly once. PostgreSQL DDL is transactional, so a
    failing migration leaves nothing behind.
    """
    _check_names(migrations)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (PG_MIGRATION_LOCK_KEY,))
        conn.execute(_TABLE_SQL)
    applied: list[str] = []
    for name, step in migrations:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (PG_MIGRATION_LOCK_KEY,))
            # A script is one call: without parameters psycopg sends it as a simple
            # query, so `$$` function bodies need no client-side splitting.
            if _apply_one(conn, name, step, "%s", conn.execute):
                applied.append(name)
    return applied


def _run_sqlite_script(conn: sqlite3.Connection, script: str) -> None:
    for statement in split_sql(script):
        conn.execute(statement)


def _apply_one(
    conn: Any, name: str, step: Any, mark: str, run_script: Callable[[str], object]
) -> bool:
    """Run `step` and record `name`, unless it is recorded already; True when it ran.

    The caller holds the transaction; `mark` is the driver's parameter placeholder.
    """
    sql = f"SELECT 1 FROM schema_migrations WHERE name = {mark}"
    if conn.execute(sql, (name,)).fetchone() is not None:
        return False
    if isinstance(step, str):
        run_script(step)
    else:
        step(conn)
    conn.execute(
        f"INSERT INTO schema_migrations (name, applied_at) VALUES ({mark}, {mark})",
        (name, _now()),
    )
    return True

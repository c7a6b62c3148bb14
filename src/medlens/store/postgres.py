"""The shared store: PostgreSQL through psycopg 3, behind the same interface as SQLite.

For deployments with several app servers and `medlens worker` processes on several
machines. Jobs are claimed with `SELECT ... FOR UPDATE SKIP LOCKED` so workers never
wait on each other's rows; times come from the database clock (`now()`), so leases
do not depend on the workers' clocks agreeing. Idempotent study creation takes
transaction-scoped advisory locks, with the unique constraints as a backstop.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from medlens.errors import BackendUnavailable, StoreError
from medlens.store.blobs import BlobStore
from medlens.store.migrate import PgStep, apply_pg_migrations
from medlens.store.rows import json_dumps
from medlens.store.schema import PG_MIGRATIONS
from medlens.store.sqlstore import SqlStore


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - psycopg is in the server extra
        raise BackendUnavailable(
            "PostgreSQL support needs psycopg: pip install 'medlens[server]'"
        ) from exc
    return psycopg


def redact_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


class _Conn:
    """Wraps a psycopg connection so shared SQL can use `?` placeholders."""

    def __init__(self, conn: Any) -> None:
        self.raw = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.raw.execute(sql.replace("?", "%s"), tuple(params))


class PostgresStore(SqlStore):
    _skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(
        self,
        url: str,
        *,
        blobs: BlobStore | None = None,
        pool_size: int = 8,
        migrate: bool = True,
        connect_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.blobs = blobs
        self._psycopg = _psycopg()
        self._connect_timeout = connect_timeout
        self._pool: queue.LifoQueue[Any] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(pool_size)
        self._all: set[Any] = set()
        self._conns_lock = threading.Lock()
        self._closed = False
        if migrate:
            self.migrate()

    # --- connections -----------------------------------------------------------
    def _connect(self) -> Any:
        try:
            conn = self._psycopg.connect(
                self.url, autocommit=True, connect_timeout=int(self._connect_timeout)
            )
        except self._psycopg.Error as exc:
            raise StoreError(
                f"Cannot connect to PostgreSQL at {redact_url(self.url)}: {exc}".strip()
            ) from exc
        with self._conns_lock:
            self._all.add(conn)
        return conn

    @contextlib.contextmanager
    def pg_connection(self) -> Iterator[Any]:
        """Borrow a raw psycopg connection (autocommit; use `conn.transaction()`)."""
        if self._closed:
            raise StoreError("The store is closed.")
        self._slots.acquire()
        try:
            try:
                conn = self._pool.get_nowait()
            except queue.Empty:
                conn = self._connect()
            broken = False
            try:
                yield conn
            except self._psycopg.OperationalError:
                broken = True  # server restart or network cut: do not reuse it
                raise
            finally:
                if broken or conn.closed or conn.info.transaction_status != 0:
                    with self._conns_lock:
                        self._all.discard(conn)
                    with contextlib.suppress(Exception):
                        conn.close()
                else:
                    self._pool.put(conn)
        finally:
            self._slots.release()

    @contextlib.contextmanager
    def _write(self) -> Iterator[_Conn]:
        with self.pg_connection() as conn, conn.transaction():
            yield _Conn(conn)

    @contextlib.contextmanager
    def _read(self) -> Iterator[_Conn]:
        # One snapshot for the several SELECTs of a read (a study and its images);
        # read-only REPEATABLE READ never fails with serialisation errors.
        with self.pg_connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield _Conn(conn)

    def migrate(self, extra: Sequence[tuple[str, PgStep]] = ()) -> list[str]:
        with self.pg_connection() as conn:
            return apply_pg_migrations(conn, [*PG_MIGRATIONS, *extra])

    def close(self) -> None:
        self._closed = True
        with self._conns_lock:
            conns, self._all = self._all, set()
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()

    # --- dialect ---------------------------------------------------------------
    def _now(self, c: Any) -> datetime:
        return c.execute("SELECT now()").fetchone()[0]

    def _ts(self, dt: datetime) -> datetime:
        return dt

    def _iso(self, value: Any) -> str:
        if isinstance(value, datetime):
            return value.astimezone(UTC).isoformat(timespec="microseconds")
        return str(value)

    def _json_in(self, obj: Any) -> Any:
        from psycopg.types.json import Jsonb

        return Jsonb(obj, dumps=json_dumps)

    def _json_out(self, value: Any) -> Any:
        return value

    def _lock(self, c: Any, key: str) -> None:
        c.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (key,))

    def _is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, self._psycopg.errors.UniqueViolation)

    def _claim_candidate(self, c: Any, now: datetime, kinds: Sequence[str] | None) -> str | None:
        kind_sql = ""
        params: list[Any] = [now]
        if kinds is not None:
            if not kinds:
                return None
            kind_sql = " AND kind = ANY(?)"
            params.append(list(kinds))
        row = c.execute(
            "SELECT id FROM jobs WHERE (status = 'queued' OR (status = 'running'"
            " AND lease_expires_at < ?))"
            f"{kind_sql} ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED",
            params,
        ).fetchone()
        return row[0] if row else None

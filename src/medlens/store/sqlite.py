"""The embedded store: one SQLite file.

- WAL: readers never block the writer and vice versa.
- synchronous=FULL: each commit is fsynced, so a committed job result or audit row
  survives power loss, not just a process crash (NORMAL may lose the last commits on
  power loss). The cost is one fsync per write transaction, small next to model time.
- busy_timeout 10 s and `BEGIN IMMEDIATE` for every write: a deferred transaction that
  later writes gets SQLITE_BUSY at once (ignoring the timeout); IMMEDIATE takes the
  write lock up front and waits politely instead. This is what prevents
  "database is locked" under several writer and reader threads.
- A small pool of connections (check_same_thread off, one thread at a time each) so
  the server's thread pool, job workers and heartbeats can all use the store.
"""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from medlens.errors import StoreError
from medlens.store import rows as R
from medlens.store.blobs import BlobStore
from medlens.store.migrate import SqliteStep, apply_sqlite_migrations
from medlens.store.schema import SQLITE_MIGRATIONS
from medlens.store.sqlstore import SqlStore

BUSY_TIMEOUT_MS = 10_000


def sqlite_path_from_url(url: str) -> Path:
    """`sqlite:///relative.db`, `sqlite:////abs/path.db` or a plain path."""
    if not url.startswith("sqlite:"):
        return Path(url).expanduser()
    rest = url[len("sqlite:") :]
    if rest.startswith("///"):
        rest = rest[3:]  # what remains starts with "/" when the path is absolute
    elif rest.startswith("//"):
        raise StoreError(f"Unsupported SQLite URL {url!r}: use sqlite:///path/to/file.db")
    path = unquote(rest.split("?", 1)[0])
    return Path(path).expanduser() if path else Path(":memory:")


def _enable_wal(conn: sqlite3.Connection) -> str:
    # Switching a fresh file to WAL needs a lock that the busy handler does not wait
    # for, so several processes opening a new database at once retry here.
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0])
            if mode.lower() == "wal":
                return mode
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection configured the MedLens way (autocommit; explicit transactions)."""
    conn = sqlite3.connect(
        str(path), isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
    )
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    mode = _enable_wal(conn)
    if str(mode).lower() != "wal" and str(path) != ":memory:":
        raise StoreError(f"SQLite at {path}: cannot enable WAL (journal_mode={mode}).")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


class SqliteStore(SqlStore):
    # jobs.seq is a plain INTEGER here: the insert numbers the job (the write lock is held).
    _job_seq = ("seq, ", "(SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs), ")

    def __init__(
        self,
        url: str,
        *,
        blobs: BlobStore | None = None,
        pool_size: int = 8,
        migrate: bool = True,
    ) -> None:
        self.url = url
        self.path = sqlite_path_from_url(url)
        self.blobs = blobs
        if str(self.path) == ":memory:":
            raise StoreError("An in-memory SQLite store cannot be shared; give a file path.")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"Cannot create the folder for {self.path}: {exc}") from exc
        self._pool: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(pool_size)
        self._all: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._closed = False
        if migrate:
            self.migrate()

    # --- connections -----------------------------------------------------------
    @contextlib.contextmanager
    def sqlite_connection(self) -> Iterator[sqlite3.Connection]:
        """Borrow a configured connection (autocommit; use BEGIN IMMEDIATE to write)."""
        if self._closed:
            raise StoreError("The store is closed.")
        self._slots.acquire()
        try:
            try:
                conn = self._pool.get_nowait()
            except queue.Empty:
                try:
                    conn = connect(self.path)
                except sqlite3.Error as exc:
                    raise StoreError(f"Cannot open the database {self.path}: {exc}") from exc
                with self._conns_lock:
                    self._all.append(conn)
            try:
                yield conn
            finally:
                if conn.in_transaction:  # a caller bailed out mid-transaction
                    conn.rollback()
                self._pool.put(conn)
        finally:
            self._slots.release()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self.sqlite_connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        # A deferred read transaction: several SELECTs see one consistent snapshot.
        with self.sqlite_connection() as conn:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.rollback()

    def migrate(self, extra: Sequence[tuple[str, SqliteStep]] = ()) -> list[str]:
        with self.sqlite_connection() as conn:
            return apply_sqlite_migrations(conn, [*SQLITE_MIGRATIONS, *extra])

    def integrity_check(self) -> str:
        with self.sqlite_connection() as conn:
            return str(conn.execute("PRAGMA integrity_check").fetchone()[0])

    def close(self) -> None:
        self._closed = True
        with self._conns_lock:
            conns, self._all = self._all, []
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    # --- dialect ---------------------------------------------------------------
    def _now(self, c: Any) -> datetime:
        return R.utcnow()

    def _ts(self, dt: datetime) -> str:
        return R.iso(dt)

    def _iso(self, value: Any) -> str:
        return str(value)

    def _json_in(self, obj: Any) -> str:
        return R.json_dumps(obj)

    def _json_out(self, value: Any) -> Any:
        return R.json_loads(value)

    def _is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc)

    def _claim_candidate(self, c: Any, now: datetime, kinds: Sequence[str] | None) -> str | None:
        # Under BEGIN IMMEDIATE no other writer runs, so select-then-update is atomic.
        kind_sql = ""
        params: list[Any] = [self._ts(now)]
        if kinds is not None:
            if not kinds:
                return None
            kind_sql = f" AND kind IN ({', '.join('?' * len(kinds))})"
            params.extend(kinds)
        row = c.execute(
            "SELECT id FROM jobs WHERE (status = 'queued' OR (status = 'running'"
            " AND lease_expires_at < ?))"
            f"{kind_sql} ORDER BY seq LIMIT 1",
            params,
        ).fetchone()
        return row[0] if row else None

"""SQLite tables of the case library, in the same database file as the MedLens store.

Tables (created by named `retrieval_*` migrations through medlens.store.migrate):
- `library_cases`: one row per case of a named library (file name, labels JSON, report
  text, blob keys of the de-identified image and its thumbnail).
- `library_embeddings`: the embedding cache, keyed by (decoded-pixel sha256, encoder id)
  - shared by every library, so the same image is never embedded twice by one encoder.
- `library_state`: a generation counter per library, bumped on every change, which tells
  on-disk index files whether they are stale.

With a PostgreSQL store the library keeps its own SQLite file `<data_dir>/library.db`
(vectors are local, per-machine data; see docs/retrieval.md).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from medlens.store.migrate import apply_sqlite_migrations

MIGRATIONS: list[tuple[str, str]] = [
    (
        "retrieval_001_library",
        """
        CREATE TABLE IF NOT EXISTS library_cases (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            library TEXT NOT NULL,
            case_id TEXT NOT NULL,
            filename TEXT NOT NULL,
            image_sha256 TEXT NOT NULL,
            pixel_sha256 TEXT NOT NULL,
            labels TEXT NOT NULL DEFAULT '{}',
            report TEXT,
            thumbnail TEXT,
            source TEXT NOT NULL DEFAULT '',
            added_at TEXT NOT NULL,
            UNIQUE (library, case_id)
        );
        CREATE INDEX IF NOT EXISTS library_cases_pixel ON library_cases (pixel_sha256);
        CREATE TABLE IF NOT EXISTS library_embeddings (
            pixel_sha256 TEXT NOT NULL,
            encoder_id TEXT NOT NULL,
            dim INTEGER NOT NULL,
            vector BLOB NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (pixel_sha256, encoder_id)
        );
        CREATE TABLE IF NOT EXISTS library_state (
            library TEXT PRIMARY KEY,
            generation INTEGER NOT NULL
        );
        """,
    ),
]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class CaseRow:
    id: int
    library: str
    case_id: str
    filename: str
    image_sha256: str
    pixel_sha256: str
    labels: dict[str, Any]
    report: str | None
    thumbnail: str | None
    source: str
    added_at: str


_CASE_COLS = (
    "id, library, case_id, filename, image_sha256, pixel_sha256, labels, report, "
    "thumbnail, source, added_at"
)


def _case(row: Sequence[Any]) -> CaseRow:
    return CaseRow(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        json.loads(row[6]),
        row[7],
        row[8],
        row[9],
        row[10],
    )


def sqlite_path_for(settings: Any) -> Path:
    url: str = settings.resolved_database_url
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :]).expanduser()
    if url.startswith("sqlite://"):
        return Path(url[len("sqlite://") :]).expanduser()
    return settings.data_path / "library.db"


class LibraryDB:
    """A thin, thread-confined wrapper over one SQLite connection."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.conn = sqlite3.connect(
            str(path), timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA busy_timeout=30000")
        apply_sqlite_migrations(self.conn, MIGRATIONS)

    def close(self) -> None:
        self.conn.close()

    # --- state ---------------------------------------------------------------------
    def generation(self, library: str) -> int:
        row = self.conn.execute(
            "SELECT generation FROM library_state WHERE library = ?", (library,)
        ).fetchone()
        return int(row[0]) if row else 0

    def libraries(self) -> list[tuple[str, int]]:
        return [
            (r[0], int(r[1]))
            for r in self.conn.execute(
                "SELECT library, COUNT(*) FROM library_cases GROUP BY library ORDER BY library"
            )
        ]

    def encoders(self, library: str) -> list[tuple[str, int]]:
        """Encoder ids with vectors for this library's cases, most vectors first."""
        return [
            (r[0], int(r[1]))
            for r in self.conn.execute(
                "SELECT e.encoder_id, COUNT(*) FROM library_cases c JOIN library_embeddings e "
                "ON e.pixel_sha256 = c.pixel_sha256 WHERE c.library = ? "
                "GROUP BY e.encoder_id ORDER BY COUNT(*) DESC, MAX(e.created_at) DESC",
                (library,),
            )
        ]

    # --- embeddings ----------------------------------------------------------------
    def cached_vectors(self, pixel_shas: Iterable[str], encoder_id: str) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        shas = list(dict.fromkeys(pixel_shas))
        for i in range(0, len(shas), 500):
            chunk = shas[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for sha, dim, blob in self.conn.execute(
                f"SELECT pixel_sha256, dim, vector FROM library_embeddings "
                f"WHERE encoder_id = ? AND pixel_sha256 IN ({marks})",
                (encoder_id, *chunk),
            ):
                out[sha] = np.frombuffer(blob, dtype=np.float32, count=dim)
        return out

    def put_vectors(self, encoder_id: str, vectors: dict[str, np.ndarray]) -> None:
        now = _now()
        rows = [
            (sha, encoder_id, int(v.shape[0]), np.ascontiguousarray(v, np.float32).tobytes(), now)
            for sha, v in vectors.items()
        ]
        with self._tx():
            self.conn.executemany(
                "INSERT OR REPLACE INTO library_embeddings "
                "(pixel_sha256, encoder_id, dim, vector, created_at) VALUES (?, ?, ?, ?, ?)",
                rows,
            )

    # --- cases ---------------------------------------------------------------------
    def upsert_cases(self, library: str, cases: Sequence[dict[str, Any]]) -> int:
        """Insert or replace cases (by case_id) and bump the generation, atomically."""
        now = _now()
        with self._tx():
            for c in cases:
                self.conn.execute(
                    "INSERT INTO library_cases (library, case_id, filename, image_sha256, "
                    "pixel_sha256, labels, report, thumbnail, source, added_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (library, case_id) DO "
                    "UPDATE SET filename = excluded.filename, image_sha256 = excluded.image_sha256,"
                    " pixel_sha256 = excluded.pixel_sha256, labels = excluded.labels, "
                    "report = excluded.report, thumbnail = excluded.thumbnail, "
                    "source = excluded.source, added_at = excluded.added_at",
                    (
                        library,
                        c["case_id"],
                        c["filename"],
                        c["image_sha256"],
                        c["pixel_sha256"],
                        json.dumps(c.get("labels") or {}, sort_keys=True),
                        c.get("report"),
                        c.get("thumbnail"),
                        c.get("source", ""),
                        now,
                    ),
                )
            self._bump(library)
        return len(cases)

    def remove_library(self, library: str) -> int:
        with self._tx():
            cur = self.conn.execute("DELETE FROM library_cases WHERE library = ?", (library,))
            n = cur.rowcount
            self._bump(library)
        return int(n)

    def cases(self, library: str) -> list[CaseRow]:
        return [
            _case(r)
            for r in self.conn.execute(
                f"SELECT {_CASE_COLS} FROM library_cases WHERE library = ? ORDER BY id", (library,)
            )
        ]

    def cases_by_id(self, ids: Sequence[int]) -> dict[int, CaseRow]:
        out: dict[int, CaseRow] = {}
        for i in range(0, len(ids), 500):
            chunk = [int(x) for x in ids[i : i + 500]]
            marks = ",".join("?" * len(chunk))
            for r in self.conn.execute(
                f"SELECT {_CASE_COLS} FROM library_cases WHERE id IN ({marks})", chunk
            ):
                out[int(r[0])] = _case(r)
        return out

    def matrix(self, library: str, encoder_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(case row ids (N,), vectors (N, dim)) of the library's embedded cases, by id."""
        ids: list[int] = []
        vecs: list[bytes] = []
        dim = 0
        for cid, d, blob in self.conn.execute(
            "SELECT c.id, e.dim, e.vector FROM library_cases c JOIN library_embeddings e "
            "ON e.pixel_sha256 = c.pixel_sha256 AND e.encoder_id = ? WHERE c.library = ? "
            "ORDER BY c.id",
            (encoder_id, library),
        ):
            ids.append(int(cid))
            vecs.append(blob)
            dim = int(d)
        if not ids:
            return np.empty(0, np.int64), np.empty((0, dim), np.float32)
        mat = np.frombuffer(b"".join(vecs), dtype=np.float32).reshape(len(ids), dim)
        return np.asarray(ids, np.int64), mat.copy()

    def count_cases(self, library: str) -> int:
        return int(
            self.conn.execute(
                "SELECT COUNT(*) FROM library_cases WHERE library = ?", (library,)
            ).fetchone()[0]
        )

    def bump_generation(self, library: str) -> None:
        with self._tx():
            self._bump(library)

    # --- helpers ---------------------------------------------------------------------
    def _bump(self, library: str) -> None:
        self.conn.execute(
            "INSERT INTO library_state (library, generation) VALUES (?, 1) "
            "ON CONFLICT (library) DO UPDATE SET generation = generation + 1",
            (library,),
        )

    def _tx(self) -> _Tx:
        return _Tx(self.conn)


class _Tx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")

"""The store logic shared by SQLite and PostgreSQL, written once against a tiny dialect.

SQL here uses `?` placeholders; a backend supplies transactions (`_write`/`_read`),
value conversion (JSON, timestamps), locks and the job-claim query. Every write runs in
one transaction, so a crash leaves each operation fully applied or not at all.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from medlens.errors import Conflict
from medlens.store import rows as R
from medlens.store.audit_sql import AuditSql
from medlens.store.base import (
    Job,
    Message,
    NewImage,
    StoredImage,
    Study,
)
from medlens.store.blobs import BlobStore
from medlens.store.delivery_sql import DeliverySql
from medlens.store.identity_sql import IdentitySql
from medlens.store.integration_state_sql import IntegrationStateSql
from medlens.store.jobsql import JobsSql
from medlens.store.review_sql import ReviewSql
from medlens.store.sso_sql import SsoSql
from medlens.store.usersql import UsersSql
from medlens.tasks.interpret.result import Interpretation

log = logging.getLogger(__name__)


class SqlStore(
    JobsSql, AuditSql, ReviewSql, UsersSql, SsoSql, IntegrationStateSql, IdentitySql, DeliverySql
):
    """Base class; see sqlite.py and postgres.py for the dialects."""

    url: str
    blobs: BlobStore | None

    # --- dialect hooks (overridden) ------------------------------------------
    def close(self) -> None:
        raise NotImplementedError

    def migrate(self) -> list[str]:
        raise NotImplementedError

    def _write(self) -> contextlib.AbstractContextManager[Any]:
        raise NotImplementedError

    def _read(self) -> contextlib.AbstractContextManager[Any]:
        raise NotImplementedError

    def _now(self, c: Any) -> datetime:
        raise NotImplementedError

    def _ts(self, dt: datetime) -> Any:
        raise NotImplementedError

    def _iso(self, value: Any) -> str:
        raise NotImplementedError

    def _json_in(self, obj: Any) -> Any:
        raise NotImplementedError

    def _json_out(self, value: Any) -> Any:
        raise NotImplementedError

    def _lock(self, c: Any, key: str) -> None:
        """Serialise writers on `key` until the transaction ends (no-op on SQLite)."""

    def _claim_candidate(self, c: Any, now: datetime, kinds: Sequence[str] | None) -> str | None:
        raise NotImplementedError

    def _is_unique_violation(self, exc: BaseException) -> bool:
        raise NotImplementedError

    # --- conversions ---------------------------------------------------------
    def _job(self, row: Sequence[Any]) -> Job:
        return Job(
            id=row[0],
            study_id=row[1],
            kind=row[2],
            status=row[3],
            progress=float(row[4]),
            stage=row[5],
            payload=self._json_out(row[6]),
            result=self._json_out(row[7]) if row[7] is not None else None,
            error=row[8],
            attempts=int(row[9]),
            created_at=self._iso(row[10]),
            updated_at=self._iso(row[11]),
            lease_owner=row[12],
            lease_expires_at=self._iso(row[13]) if row[13] is not None else None,
            max_attempts=int(row[14]),
            restarts=int(row[15]),
        )

    def _image(self, row: Sequence[Any]) -> StoredImage:
        return StoredImage(
            id=int(row[0]),
            study_id=row[1],
            position=int(row[2]),
            sha256=row[3],
            pixel_sha256=row[4],
            format=row[5],
            filename=row[6],
            metadata=self._json_out(row[7]),
        )

    def _load_study(self, c: Any, row: Sequence[Any]) -> Study:
        images = c.execute(
            f"SELECT {R.IMAGE_COLUMNS} FROM images WHERE study_id = ? ORDER BY position",
            (row[0],),
        ).fetchall()
        return Study(
            id=row[0],
            created_at=self._iso(row[1]),
            context=self._json_out(row[2]),
            images=tuple(self._image(r) for r in images),
            idempotency_key=row[3],
            owner=row[4],
            owner_id=row[5],
            group=row[6],
        )

    def _study_by(self, c: Any, where: str, params: tuple[Any, ...]) -> Study | None:
        row = c.execute(f"SELECT {R.STUDY_COLUMNS} FROM studies WHERE {where}", params).fetchone()
        return self._load_study(c, row) if row else None

    # --- studies -------------------------------------------------------------
    def create_study(
        self,
        images: list[NewImage],
        context: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        owner: str | None = None,
    ) -> tuple[Study, bool]:
        if not images:
            raise ValueError("a study needs at least one image")
        set_hash = R.image_set_hash(images)
        okey = R.owner_key(owner)
        for attempt in range(3):
            try:
                return self._create_study_tx(
                    images, context, set_hash, okey, idempotency_key, owner
                )
            except Exception as exc:
                # A concurrent twin committed first (PG without the lock, or a race we did
                # not foresee): the unique constraint caught it; look again.
                if not self._is_unique_violation(exc) or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _create_study_tx(
        self,
        images: list[NewImage],
        context: dict[str, Any],
        set_hash: str,
        okey: str,
        idempotency_key: str | None,
        owner: str | None,
    ) -> tuple[Study, bool]:
        with self._write() as c:
            if idempotency_key is not None:
                self._lock(c, f"idem:{okey}:{idempotency_key}")
            self._lock(c, f"set:{okey}:{set_hash}")
            for sha in sorted({img.sha256 for img in images}):
                self._lock(c, f"blob:{sha}")
            if idempotency_key is not None:
                found = self._study_by(
                    c, "owner_key = ? AND idempotency_key = ?", (okey, idempotency_key)
                )
                if found is not None:
                    got = sorted({i.sha256 for i in found.images})
                    if got != sorted({i.sha256 for i in images}):
                        raise Conflict(
                            "This Idempotency-Key was already used for a different upload; "
                            "use a new key for new images."
                        )
                    return found, False
            found = self._study_by(c, "owner_key = ? AND image_set_hash = ?", (okey, set_hash))
            if found is not None:
                return found, False
            now = self._now(c)
            study_id = R.new_id()
            c.execute(
                "INSERT INTO studies (id, created_at, context, owner_key, owner, idempotency_key,"
                " image_set_hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    study_id,
                    self._ts(now),
                    self._json_in(context),
                    okey,
                    owner,
                    idempotency_key,
                    set_hash,
                ),
            )
            for pos, img in enumerate(images):
                if img.data is not None and self.blobs is not None:
                    # Inside the transaction (and the blob lock) so a concurrent delete of
                    # another study holding the same bytes cannot remove it under us.
                    written = self.blobs.put(img.data)
                    if written != img.sha256:
                        raise ValueError(f"image {pos}: data does not match its sha256")
                c.execute(
                    "INSERT INTO images (study_id, position, sha256, pixel_sha256, format,"
                    " filename, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        study_id,
                        pos,
                        img.sha256,
                        img.pixel_sha256,
                        img.format,
                        img.filename,
                        self._json_in(img.metadata),
                    ),
                )
            study = self._study_by(c, "id = ?", (study_id,))
            assert study is not None
            return study, True

    def get_study(self, study_id: str) -> Study | None:
        with self._read() as c:
            return self._study_by(c, "id = ?", (study_id,))

    def list_studies(self, *, limit: int = 50, offset: int = 0) -> list[Study]:
        with self._read() as c:
            found = c.execute(
                f"SELECT {R.STUDY_COLUMNS} FROM studies ORDER BY created_at DESC, id"
                " LIMIT ? OFFSET ?",
                (int(limit), int(offset)),
            ).fetchall()
            return [self._load_study(c, row) for row in found]

    def delete_study(self, study_id: str) -> bool:
        with self._write() as c:
            shas = [
                r[0]
                for r in c.execute(
                    "SELECT DISTINCT sha256 FROM images WHERE study_id = ?", (study_id,)
                ).fetchall()
            ]
            for sha in sorted(shas):
                self._lock(c, f"blob:{sha}")
            deleted = c.execute("DELETE FROM studies WHERE id = ?", (study_id,)).rowcount
            unreferenced = [
                sha
                for sha in shas
                if c.execute("SELECT 1 FROM images WHERE sha256 = ? LIMIT 1", (sha,)).fetchone()
                is None
            ]
            if self.blobs is not None:
                # Still inside the transaction: if the commit then fails, a row may point
                # at a removed file, which reads as "image missing" - never a PHI leftover.
                for sha in unreferenced:
                    self.blobs.delete(sha)
            return deleted > 0

    # --- interpretations -----------------------------------------------------
    def _save_interpretation(
        self, c: Any, study_id: str, job_id: str | None, interp: Interpretation
    ) -> None:
        # Python-mode dump, so the strict JSON encoder still refuses NaN/Infinity (json
        # mode would silently turn them into null and the row would no longer validate).
        now = self._ts(self._now(c))
        c.execute(
            "INSERT INTO interpretations (study_id, job_id, data, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (study_id) DO UPDATE SET job_id = excluded.job_id,"
            " data = excluded.data, updated_at = excluded.updated_at",
            (study_id, job_id, self._json_in(interp.model_dump()), now),
        )

    def save_interpretation(self, study_id: str, job_id: str, interp: Interpretation) -> None:
        with self._write() as c:
            self._save_interpretation(c, study_id, job_id, interp)

    def get_interpretation(self, study_id: str) -> Interpretation | None:
        with self._read() as c:
            row = c.execute(
                "SELECT data FROM interpretations WHERE study_id = ?", (study_id,)
            ).fetchone()
        return Interpretation.model_validate(self._json_out(row[0])) if row else None

    # --- conversations -------------------------------------------------------
    def _add_message(
        self, c: Any, study_id: str, role: str, content: str, job_id: str | None
    ) -> Message:
        self._lock(c, f"messages:{study_id}")
        seq = c.execute(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE study_id = ?", (study_id,)
        ).fetchone()[0]
        now = self._now(c)
        c.execute(
            f"INSERT INTO messages ({R.MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            (study_id, seq, role, content, self._ts(now), job_id),
        )
        return Message(study_id, int(seq), role, content, self._iso(self._ts(now)), job_id)

    def add_message(
        self, study_id: str, role: str, content: str, *, job_id: str | None = None
    ) -> Message:
        with self._write() as c:
            return self._add_message(c, study_id, role, content, job_id)

    def list_messages(self, study_id: str) -> list[Message]:
        with self._read() as c:
            found = c.execute(
                f"SELECT {R.MESSAGE_COLUMNS} FROM messages WHERE study_id = ? ORDER BY seq",
                (study_id,),
            ).fetchall()
        return [Message(r[0], int(r[1]), r[2], r[3], self._iso(r[4]), r[5]) for r in found]

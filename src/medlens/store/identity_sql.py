"""The original identity of integrated studies, on both backends (mixed into `SqlStore`).

Only `medlens.integrations` calls these: the identity is used to file results back in
the right place in the PACS, and is never returned by an API, shown on a page or logged.
Deleting the study deletes its identity (foreign key with ON DELETE CASCADE).
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from medlens.errors import NotFound
from medlens.store import rows as R


class IdentitySql:
    if TYPE_CHECKING:  # supplied by SqlStore and the dialects

        def _write(self) -> contextlib.AbstractContextManager[Any]: ...
        def _read(self) -> contextlib.AbstractContextManager[Any]: ...

    def put_study_identity(self, study_id: str, identity: dict[str, Any]) -> None:
        """Insert or replace the study's original identity (NotFound: no such study)."""
        data = json.dumps(identity, sort_keys=True, allow_nan=False)
        now = datetime.now(UTC).isoformat()
        with self._write() as c:
            if c.execute("SELECT 1 FROM studies WHERE id = ?", (study_id,)).fetchone() is None:
                raise NotFound(f"No study {study_id}.")
            # One statement, so two pulls of the same study at once cannot both insert.
            c.execute(
                "INSERT INTO study_identities (study_id, data, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (study_id) DO UPDATE SET data = excluded.data, "
                "updated_at = excluded.updated_at",
                (study_id, data, now),
            )

    def get_study_identity(self, study_id: str) -> dict[str, Any] | None:
        """The study's original identity, or None (not integrated, or deleted)."""
        with self._read() as c:
            row = c.execute(
                "SELECT data FROM study_identities WHERE study_id = ?", (study_id,)
            ).fetchone()
        return None if row is None else json.loads(row[0])

    def find_study_by_key(self, idempotency_key: str, *, owner: str | None = None) -> str | None:
        """The id of the study stored under this idempotency key (e.g. `dicom:<ref>`)."""
        with self._read() as c:
            row = c.execute(
                "SELECT id FROM studies WHERE owner_key = ? AND idempotency_key = ?",
                (R.owner_key(owner), idempotency_key),
            ).fetchone()
        return None if row is None else str(row[0])

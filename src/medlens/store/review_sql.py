"""Radiologist review SQL shared by both backends: versions, signature, addenda.

Each write takes the study's review lock, so two radiologists saving at once get
versions n and n+1 (never a clash) and a sign races a save cleanly. Mixed into
`SqlStore`, which supplies transactions and value conversion.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medlens.errors import Conflict
from medlens.store.review import (
    Addendum,
    ReportSignature,
    ReportVersion,
    addendum_document,
    sha256_of,
    signed_document,
)
from medlens.store.sqlparts import SqlParts

_VERSION_COLUMNS = "study_id, version, author_id, author_name, content, created_at"
_SIGNATURE_COLUMNS = "study_id, version, signer_id, signer_name, signed_at, sha256"
_ADDENDUM_COLUMNS = "study_id, seq, text, author_id, author_name, created_at, sha256"


class ReviewSql(SqlParts):
    # --- conversions ---------------------------------------------------------
    def _version(self, r: Sequence[Any]) -> ReportVersion:
        return ReportVersion(r[0], int(r[1]), r[2], r[3], self._json_out(r[4]), self._iso(r[5]))

    def _signature(self, r: Sequence[Any]) -> ReportSignature:
        return ReportSignature(r[0], int(r[1]), r[2], r[3], self._iso(r[4]), r[5])

    def _addendum(self, r: Sequence[Any]) -> Addendum:
        return Addendum(r[0], int(r[1]), r[2], r[3], r[4], self._iso(r[5]), r[6])

    def _get_signature(self, c: Any, study_id: str) -> ReportSignature | None:
        row = c.execute(
            f"SELECT {_SIGNATURE_COLUMNS} FROM report_signatures WHERE study_id = ?", (study_id,)
        ).fetchone()
        return self._signature(row) if row else None

    def _latest_version(self, c: Any, study_id: str) -> ReportVersion | None:
        row = c.execute(
            f"SELECT {_VERSION_COLUMNS} FROM report_versions WHERE study_id = ?"
            " ORDER BY version DESC LIMIT 1",
            (study_id,),
        ).fetchone()
        return self._version(row) if row else None

    def _stamp(self, c: Any) -> tuple[Any, str]:
        """(database value, ISO text) of now; the text is exactly what reads back."""
        value = self._ts(self._now(c))
        return value, self._iso(value)

    # --- versions ------------------------------------------------------------
    def add_report_version(
        self,
        study_id: str,
        content: dict[str, Any],
        *,
        author_id: str | None,
        author_name: str,
        base_version: int | None = None,
    ) -> ReportVersion:
        """Save a new version; `base_version` (the version the author edited, 0 for the AI
        draft) makes a save on top of someone else's newer version a Conflict."""
        with self._write() as c:
            self._lock(c, f"review:{study_id}")
            if self._get_signature(c, study_id) is not None:
                raise Conflict("The report is signed; corrections go in an addendum.")
            latest = self._latest_version(c, study_id)
            current = latest.version if latest else 0
            if base_version is not None and base_version != current:
                raise Conflict(
                    f"Version {current} was saved meanwhile (you edited version "
                    f"{base_version}); reload to see it."
                )
            value, created = self._stamp(c)
            c.execute(
                f"INSERT INTO report_versions ({_VERSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                (study_id, current + 1, author_id, author_name, self._json_in(content), value),
            )
            return ReportVersion(study_id, current + 1, author_id, author_name, content, created)

    def list_report_versions(self, study_id: str) -> list[ReportVersion]:
        with self._read() as c:
            rows = c.execute(
                f"SELECT {_VERSION_COLUMNS} FROM report_versions WHERE study_id = ?"
                " ORDER BY version",
                (study_id,),
            ).fetchall()
        return [self._version(r) for r in rows]

    # --- signature -----------------------------------------------------------
    def sign_report(
        self,
        study_id: str,
        *,
        signer_id: str | None,
        signer_name: str,
        version: int | None = None,
    ) -> ReportSignature:
        """Freeze the latest version (which must be `version` when given)."""
        with self._write() as c:
            self._lock(c, f"review:{study_id}")
            if self._get_signature(c, study_id) is not None:
                raise Conflict("The report is already signed; add an addendum instead.")
            latest = self._latest_version(c, study_id)
            if latest is None:
                raise Conflict("Nothing to sign: save a version of the report first.")
            if version is not None and version != latest.version:
                raise Conflict(
                    f"Version {latest.version} is the latest, not {version}; reload and sign it."
                )
            value, signed_at = self._stamp(c)
            digest = sha256_of(
                signed_document(
                    study_id, latest.version, latest.content, signer_id, signer_name, signed_at
                )
            )
            c.execute(
                f"INSERT INTO report_signatures ({_SIGNATURE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                (study_id, latest.version, signer_id, signer_name, value, digest),
            )
            return ReportSignature(
                study_id, latest.version, signer_id, signer_name, signed_at, digest
            )

    def get_report_signature(self, study_id: str) -> ReportSignature | None:
        with self._read() as c:
            return self._get_signature(c, study_id)

    def signed_study_ids(self, study_ids: Sequence[str]) -> set[str]:
        if not study_ids:
            return set()
        marks = ", ".join("?" for _ in study_ids)
        with self._read() as c:
            rows = c.execute(
                f"SELECT study_id FROM report_signatures WHERE study_id IN ({marks})",
                tuple(study_ids),
            ).fetchall()
        return {r[0] for r in rows}

    # --- addenda -------------------------------------------------------------
    def add_report_addendum(
        self, study_id: str, text: str, *, author_id: str | None, author_name: str
    ) -> Addendum:
        with self._write() as c:
            self._lock(c, f"review:{study_id}")
            signature = self._get_signature(c, study_id)
            if signature is None:
                raise Conflict("The report is not signed yet: edit and save it instead.")
            seq = c.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM report_addenda WHERE study_id = ?",
                (study_id,),
            ).fetchone()[0]
            value, created = self._stamp(c)
            digest = sha256_of(
                addendum_document(signature.sha256, int(seq), text, author_id, author_name, created)
            )
            c.execute(
                f"INSERT INTO report_addenda ({_ADDENDUM_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (study_id, seq, text, author_id, author_name, value, digest),
            )
            return Addendum(study_id, int(seq), text, author_id, author_name, created, digest)

    def list_report_addenda(self, study_id: str) -> list[Addendum]:
        with self._read() as c:
            rows = c.execute(
                f"SELECT {_ADDENDUM_COLUMNS} FROM report_addenda WHERE study_id = ? ORDER BY seq",
                (study_id,),
            ).fetchall()
        return [self._addendum(r) for r in rows]

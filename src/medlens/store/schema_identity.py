"""Migration for hospital integration (issue 19): the original identity of pulled studies.

`study_identities` holds, per MedLens study, the original identifying DICOM header
(patient, study, series and instance identifiers) of a study that came from a PACS. It is
kept apart from `studies`/`images` (which hold only de-identified data), is read only to
build objects sent back to that PACS, and goes with its study (ON DELETE CASCADE). The
JSON is plain TEXT so the same SQL runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

IDENTITY_001 = "identity_001_study_identities"

IDENTITY_001_SQL = """
    CREATE TABLE study_identities (
        study_id TEXT PRIMARY KEY REFERENCES studies (id) ON DELETE CASCADE,
        data TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
"""

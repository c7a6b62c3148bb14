"""Migration for result delivery (issue 19): where each study's results stand.

One row per (study, target), target `dicom` (SR/GSPS/SC to the PACS) or `fhir`. A row
is `pending` until the destination accepts, then `delivered`; attempts, the next try and
the last error (one line, no identifiers) are kept so a job can show "result pending
delivery". Rows go with their study (ON DELETE CASCADE). Plain TEXT for both backends.
"""

from __future__ import annotations

DELIVERY_001 = "delivery_001_result_deliveries"

DELIVERY_001_SQL = """
    CREATE TABLE result_deliveries (
        study_id TEXT NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
        target TEXT NOT NULL CHECK (target IN ('dicom', 'fhir')),
        status TEXT NOT NULL CHECK (status IN ('pending', 'delivered')),
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT '{}',
        updated_at TEXT NOT NULL,
        PRIMARY KEY (study_id, target)
    );
    CREATE INDEX result_deliveries_status ON result_deliveries (status);
"""

"""Migration for the integration cursors (issue 19): small named values that must survive
a restart, such as the last Orthanc `/changes` sequence number the poller has handled
(`orthanc.changes.seq`) or the time of the last wake-up request (`orthanc.changes.wake`).

Values are short strings; nothing identifying goes here (Seq numbers and times only).
The same SQL runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

INTEGRATION_STATE_001 = "integration_state_001_cursors"

INTEGRATION_STATE_001_SQL = """
    CREATE TABLE integration_state (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
"""

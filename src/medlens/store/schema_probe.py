"""Migration for the fixes of the attacker probe (issue 18), both backends.

- `jobs.restarts`: runs cut short by the death of their worker (lease expired), counted
  apart from `attempts`, so a crash-looping process no longer fails innocent jobs; a job
  that reaches the restart cap ends 'failed' (see store/jobsql.py).
- Image file names: uploads used to keep the client's file name, which routinely carries
  PHI ("Doe_John_DOB….dcm"). Stored names become "image <n>", as new uploads are named.
"""

from __future__ import annotations

PROBE_001 = "probe_001_job_restarts_image_names"

PROBE_001_SQL = """
    ALTER TABLE jobs ADD COLUMN restarts INTEGER NOT NULL DEFAULT 0;
    UPDATE images SET filename = 'image ' || (position + 1);
"""

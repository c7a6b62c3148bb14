"""Waiting for a job through the API (shared by the server tests that run whole studies)."""

from __future__ import annotations

import time
from typing import Any


def wait_job(client: Any, job_id: str, timeout: float = 180.0) -> dict[str, Any]:
    """Poll GET /v1/jobs/{id} until it is done or failed; the job's JSON."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")

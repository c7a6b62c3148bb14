"""Probe finding: a crash-looping process failed innocent jobs, because every death of
the process used up one of the job's 3 attempts (6 of 65 jobs failed in 25 kill -9
rounds). Now a death counts as a restart, not an attempt; only the restart cap (10)
fails a job, one that kills its worker every time (tests/store/test_store_jobs.py).

Each round starts `medlens worker`, lets it finish `k` jobs, then SIGKILLs it in the
middle of the next one. With k = 0 the job the last worker died on (claimed first, its
lease expired) dies again, so one job sees several deaths in a row, as under a crash
loop. Default run: 5 rounds (one job killed 4 times: the old rule failed it at 3);
`pytest -m slow` runs the probe's 25.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medlens.store import open_store
from medlens.store.rows import MAX_RESTARTS

LEASE_S = 0.6
PAYLOAD = {"sleep": 0.4, "steps": 4, "rounds": 100}
PATTERN = (1, 0, 0, 0)  # jobs to finish before each kill, cycled


def _spawn(url: str, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "medlens.cli.main", "worker", "--database-url", url,
           "--handlers", "medlens.jobs.testing:HANDLERS", "--kind", "test-compute",
           "--concurrency", "1", "--lease-seconds", str(LEASE_S), "--poll-interval", "0.05",
           *extra]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _kill_mid_job(store, proc: subprocess.Popen, finish_first: int) -> str:
    """SIGKILL `proc` once it has finished `finish_first` jobs and is part-way through
    another; return that job's id (read from the database after the kill)."""
    tag = f":{proc.pid}:"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = [j for j in store.list_jobs(status="done", limit=1000)
                if tag in j.result["worker"]]  # fmt: skip
        running = [j for j in store.list_jobs(status="running", limit=10)
                   if tag in (j.lease_owner or "") and 0 < j.progress < 1]  # fmt: skip
        if len(done) >= finish_first and running:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            held = [j for j in store.list_jobs(status="running", limit=10)
                    if tag in (j.lease_owner or "")]  # fmt: skip
            assert len(held) == 1, "the worker finished its job just before the kill"
            return held[0].id
        time.sleep(0.01)
    proc.kill()
    raise AssertionError("never caught the worker mid-job")


def _crash_loop(tmp_path: Path, rounds: int) -> None:
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    store = open_store(url)
    ids = [store.enqueue_job("test-compute", dict(PAYLOAD)).id for _ in range(rounds + 2)]
    deaths: collections.Counter[str] = collections.Counter()
    try:
        for r in range(rounds):
            killed = _kill_mid_job(store, _spawn(url), PATTERN[r % len(PATTERN)])
            deaths[killed] += 1
            time.sleep(LEASE_S + 0.1)  # the dead worker's lease runs out
        # The rounds did what they claim: some job died more often than it has attempts.
        assert max(deaths.values()) > 3, deaths
        assert max(deaths.values()) <= MAX_RESTARTS, deaths
        drain = _spawn(url, "--exit-when-idle")
        assert drain.wait(timeout=120) == 0
        jobs = [store.get_job(i) for i in ids]
        assert [j.id for j in jobs if j.status != "done"] == [], [
            (j.id, j.status, j.error, deaths[j.id]) for j in jobs if j.status != "done"
        ]
        for job in jobs:  # every death counted as a restart; no attempt used up by one
            assert (job.attempts, job.restarts) == (1, deaths[job.id]), job
    finally:
        store.close()


def test_kill_9_rounds_fail_no_innocent_job(tmp_path: Path) -> None:
    _crash_loop(tmp_path, rounds=5)


@pytest.mark.slow
def test_25_kill_9_rounds_fail_no_innocent_job(tmp_path: Path) -> None:
    _crash_loop(tmp_path, rounds=25)

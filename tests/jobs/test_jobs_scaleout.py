"""Scale-out: `medlens worker` processes sharing one PostgreSQL queue.

60 queued jobs (hash rounds + a sleep standing in for model time). Three workers, one of
them SIGKILLed mid-job: every job ends done exactly once, none lost, the killed
worker's job is retried by another after its lease expires; and three workers finish
sooner than one.
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
from medlens.store.testing import temp_pg_database

N_JOBS = 60
LEASE_S = 3.0
PAYLOAD = {"sleep": 0.2, "steps": 4, "rounds": 20_000}


def _spawn(url: str, out: Path) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "medlens.cli.main", "worker",
        "--database-url", url, "--concurrency", "1",
        "--handlers", "medlens.jobs.testing:HANDLERS", "--kind", "test-compute",
        "--lease-seconds", str(LEASE_S), "--poll-interval", "0.05", "--exit-when-idle",
    ]  # fmt: skip
    return subprocess.Popen(cmd, stdout=out.open("w"), stderr=subprocess.STDOUT)


def _run(url: str, tmp: Path, n_workers: int, *, kill_one: bool) -> dict:
    store = open_store(url)
    exec_log = tmp / f"executions-{n_workers}.log"
    ids = [store.enqueue_job("test-compute", {**PAYLOAD, "log": str(exec_log)}).id
           for _ in range(N_JOBS)]  # fmt: skip
    outs = [tmp / f"worker-{n_workers}-{i}.out" for i in range(n_workers)]
    procs = [_spawn(url, out) for out in outs]
    killed_pid = None
    killed_job = None
    try:
        # The clock starts at the first claim: interpreter start-up is not what scales.
        deadline = time.monotonic() + 60
        while store.count_jobs()["queued"] == N_JOBS and time.monotonic() < deadline:
            time.sleep(0.01)
        t0 = time.monotonic()
        if kill_one:
            victim = procs[0]
            deadline = time.monotonic() + 60
            tag = f":{victim.pid}:"
            while killed_pid is None and time.monotonic() < deadline:
                # Kill it at the start of a job, once it has finished some of its own.
                done = store.list_jobs(status="done", limit=N_JOBS)
                running = store.list_jobs(status="running", limit=100)
                mine = [j for j in running if tag in (j.lease_owner or "") and j.progress < 0.5]
                if mine and any(tag in j.result["worker"] for j in done):
                    os.kill(victim.pid, signal.SIGKILL)
                    victim.wait()
                    killed_pid = victim.pid
                else:
                    time.sleep(0.01)
            assert killed_pid is not None, "never caught the victim mid-job"
            # Read which job it held from the database, after the kill (no race).
            held = [
                j
                for j in store.list_jobs(status="running", limit=100)
                if tag in (j.lease_owner or "")
            ]
            assert len(held) == 1, "the victim finished its job just before the kill; rerun"
            killed_job = held[0].id
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            counts = store.count_jobs()
            if counts["done"] + counts["failed"] == N_JOBS:
                break
            time.sleep(0.05)
        elapsed = time.monotonic() - t0
        for p in procs:
            p.wait(timeout=60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    jobs = [store.get_job(i) for i in ids]
    store.close()
    return {
        "elapsed": elapsed,
        "jobs": jobs,
        "outs": [o.read_text() for o in outs],
        "executions": exec_log.read_text().split("\n") if exec_log.exists() else [],
        "killed_pid": killed_pid,
        "killed_job": killed_job,
        "procs": procs,
    }


@pytest.mark.integration
def test_three_workers_one_killed_every_job_done_exactly_once(pg_base_url, tmp_path):
    with temp_pg_database(pg_base_url) as url1:
        single = _run(url1, tmp_path, 1, kill_one=False)
    with temp_pg_database(pg_base_url) as url3:
        multi = _run(url3, tmp_path, 3, kill_one=True)

    for run in (single, multi):
        assert [j.status for j in run["jobs"]] == ["done"] * N_JOBS, [j.error for j in run["jobs"]]
        # Exactly one successful finish per job across all workers' outcome lines.
        finishes = collections.Counter(
            line.split()[1]
            for out in run["outs"]
            for line in out.splitlines()
            if line.startswith("done ")
        )
        assert set(finishes) == {j.id for j in run["jobs"]}
        assert max(finishes.values()) == 1
        # Each job's stored result came from an execution that really completed.
        executed = collections.Counter(tuple(x.split()) for x in run["executions"] if x)
        for job in run["jobs"]:
            assert executed[(job.id, job.result["worker"])] >= 1

    # The killed worker's job was restarted by another worker; the death used no attempt.
    killed = next(j for j in multi["jobs"] if j.id == multi["killed_job"])
    assert (killed.attempts, killed.restarts) == (1, 1)
    assert f":{multi['killed_pid']}:" not in killed.result["worker"]
    assert multi["procs"][0].returncode == -signal.SIGKILL
    assert all(p.returncode == 0 for p in multi["procs"][1:])
    # Nobody else's job was run twice to completion.
    per_job = collections.Counter(x.split()[0] for x in multi["executions"] if x)
    assert all(n == 1 for jid, n in per_job.items() if jid != multi["killed_job"])
    workers_used = {j.result["worker"] for j in multi["jobs"]}
    assert len(workers_used) == 3
    print(f"scale-out: 1 worker {single['elapsed']:.1f}s, 3 workers (1 killed) "
          f"{multi['elapsed']:.1f}s")  # fmt: skip
    assert multi["elapsed"] < single["elapsed"]

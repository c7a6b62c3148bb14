"""`medlens worker` on the embedded store: runs the queue, requeues, stops cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from medlens.store import open_store


def _worker(url: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "medlens.cli.main", "worker", "--database-url", url,
            "--handlers", "medlens.jobs.testing:HANDLERS", "--kind", "test-compute",
            "--poll-interval", "0.05", *extra]  # fmt: skip


def test_worker_requeues_interrupted_and_drains_the_queue(tmp_path):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    store = open_store(url)
    left = store.enqueue_job("test-compute", {"sleep": 0.05})
    store.claim_job("crashed-process", lease_seconds=3600)  # left 'running' by a crash
    ids = [store.enqueue_job("test-compute", {"sleep": 0.05}).id for _ in range(4)]
    proc = subprocess.run(
        _worker(url, "--requeue-interrupted", "--exit-when-idle", "-c", "2"),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "requeued 1 interrupted job(s)" in proc.stdout
    assert proc.stdout.count("done ") == 5
    for job_id in [left.id, *ids]:
        assert store.get_job(job_id).status == "done"
    assert (store.get_job(left.id).attempts, store.get_job(left.id).restarts) == (1, 1)
    store.close()


def test_worker_sigterm_gives_the_running_job_back(tmp_path):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    store = open_store(url)
    job = store.enqueue_job("test-compute", {"sleep": 60, "steps": 60, "rounds": 10})
    cmd = _worker(url, "--lease-seconds", "30", "--stop-timeout", "0.5")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while store.get_job(job.id).status != "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        assert proc.wait(timeout=60) == 0
        assert time.monotonic() - t0 < 15
    finally:
        if proc.poll() is None:
            proc.kill()
    back = store.get_job(job.id)
    assert (back.status, back.attempts) == ("queued", 0)
    store.close()

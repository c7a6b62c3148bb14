"""SQLite specifics: pragmas, many threads without "database is locked", SIGKILL safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from medlens.store.sqlite import SqliteStore, sqlite_path_from_url

WRITER = r"""
import sys, hashlib
from medlens.store import open_store, NewImage
from medlens.tasks.interpret.result import Interpretation, Provenance
store = open_store(sys.argv[1], images_dir=sys.argv[2])
i = 0
while True:
    data = f"{sys.argv[3]}-{i}".encode() * 50
    sha = hashlib.sha256(data).hexdigest()
    img = NewImage(sha, sha, "png", "x.png", {"i": i}, data=data)
    study, _ = store.create_study([img], {"i": i})
    job = store.enqueue_job("interpret", {"i": i}, study_id=study.id)
    claimed = store.claim_job("w", lease_seconds=60)
    if claimed is not None:
        store.finish_job(claimed.id, {"i": i}, worker_id="w", interpretation=Interpretation(
                         study_id=str(i), status="complete",
                         provenance=Provenance(medlens_version="t", created_at=str(i))),
                         messages=[("assistant", "x" * 200)])
    store.audit("w", "upload", study_id=study.id)
    if i % 3 == 0:
        store.delete_study(study.id)
    if i == 5:
        print("ready", flush=True)
    i += 1
"""


def test_url_forms():
    assert sqlite_path_from_url("sqlite:////abs/x.db") == Path("/abs/x.db")
    assert sqlite_path_from_url("sqlite:///rel/x.db") == Path("rel/x.db")
    assert sqlite_path_from_url("/plain/x.db") == Path("/plain/x.db")


def test_connection_pragmas(tmp_path):
    store = SqliteStore(f"sqlite:///{tmp_path / 'p.db'}")
    with store.sqlite_connection() as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert c.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert c.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
        assert c.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.integrity_check() == "ok"
    store.close()


def _hammer(store: SqliteStore, seconds: float, writers: int, readers: int) -> list[BaseException]:
    errors: list[BaseException] = []
    stop = time.monotonic() + seconds

    def write(n: int) -> None:
        i = 0
        try:
            while time.monotonic() < stop:
                job = store.enqueue_job("interpret", {"w": n, "i": i})
                claimed = store.claim_job(f"w{n}", lease_seconds=60)
                if claimed:
                    store.update_job(claimed.id, progress=0.5, stage="s", worker_id=f"w{n}")
                    store.finish_job(claimed.id, {"i": i}, worker_id=f"w{n}")
                store.audit(f"w{n}", "view", detail={"job": job.id})
                i += 1
        except BaseException as exc:
            errors.append(exc)

    def read() -> None:
        try:
            while time.monotonic() < stop:
                store.list_jobs(limit=20)
                store.count_jobs()
                store.list_audit(limit=5)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    threads += [threading.Thread(target=read) for _ in range(readers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_writers_and_readers_never_see_database_is_locked(tmp_path):
    store = SqliteStore(f"sqlite:///{tmp_path / 'c.db'}", pool_size=12)
    errors = _hammer(store, seconds=3.0, writers=6, readers=4)
    assert errors == []
    counts = store.count_jobs()
    assert counts["done"] > 20 and counts["running"] == 0
    assert store.integrity_check() == "ok"
    store.close()


@pytest.mark.slow
def test_writers_and_readers_for_minutes(tmp_path):
    store = SqliteStore(f"sqlite:///{tmp_path / 'c.db'}", pool_size=16)
    assert _hammer(store, seconds=120.0, writers=8, readers=6) == []
    assert store.integrity_check() == "ok"
    store.close()


def _kill_rounds(tmp_path: Path, rounds: int) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    images = tmp_path / "images"
    for r in range(rounds):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, url, str(images), str(r)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout.readline().strip() == b"ready", proc.stderr.read().decode()
        time.sleep(0.05 + (r % 5) * 0.04)  # kill at varied points
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        store = SqliteStore(url)
        assert store.integrity_check() == "ok"
        # Nothing half-written: every done job has its result and interpretation.
        for job in store.list_jobs(status="done", limit=10_000):
            assert job.result is not None
            assert store.get_interpretation(job.study_id) is not None
        for study in store.list_studies(limit=10_000):
            assert len(study.images) == 1
        store.requeue_interrupted()
        assert store.count_jobs()["running"] == 0
        store.close()
    # Every stored blob is whole (content matches its name).
    from medlens.store.blobs import BlobStore

    blobs = BlobStore(images)
    import hashlib

    for sha in blobs.iter_shas():
        assert hashlib.sha256(blobs.read(sha)).hexdigest() == sha


def test_sigkill_while_writing_leaves_a_consistent_database(tmp_path):
    _kill_rounds(tmp_path, rounds=3)


@pytest.mark.slow
def test_sigkill_many_rounds(tmp_path):
    _kill_rounds(tmp_path, rounds=50)

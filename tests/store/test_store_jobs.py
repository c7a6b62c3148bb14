"""The job queue on both backends: claim, leases, attempts, ownership, requeue."""

from __future__ import annotations

import threading
import time

from medlens.store import open_store
from medlens.store.rows import MAX_RESTARTS
from medlens.tasks.interpret.result import Interpretation, Provenance, ReportSections


def _interp(text: str, study_id: str = "s") -> Interpretation:
    return Interpretation(
        study_id=study_id,
        status="complete",
        report=ReportSections(findings=text, raw_text=text),
        provenance=Provenance(medlens_version="test", created_at="2026-01-01T00:00:00Z"),
    )


def test_job_lifecycle_queued_running_done(store, new_image):
    study, _ = store.create_study([new_image(b"j")], {})
    job = store.enqueue_job("interpret", {"lang": "en"}, study_id=study.id)
    assert (job.status, job.attempts, job.progress, job.study_id) == ("queued", 0, 0.0, study.id)
    claimed = store.claim_job("w1", lease_seconds=30)
    assert claimed.id == job.id
    assert (claimed.status, claimed.attempts, claimed.lease_owner) == ("running", 1, "w1")
    assert claimed.lease_expires_at > claimed.updated_at
    assert store.claim_job("w2") is None
    assert store.update_job(job.id, progress=0.5, stage="generating", worker_id="w1")
    assert store.update_job(job.id, progress=7, stage="clamped")  # no owner check
    assert store.get_job(job.id).progress == 1.0
    assert store.finish_job(
        job.id,
        {"ok": True},
        worker_id="w1",
        interpretation=_interp("r"),
        messages=[("assistant", "answer")],
    )
    done = store.get_job(job.id)
    assert (done.status, done.result, done.progress) == ("done", {"ok": True}, 1.0)
    assert done.error is None
    assert store.get_interpretation(study.id) == _interp("r")
    assert [m.content for m in store.list_messages(study.id)] == ["answer"]
    assert not store.finish_job(job.id, {"again": 1}, worker_id="w1")  # never twice
    assert store.get_job(job.id).result == {"ok": True}


def test_claim_order_and_kind_filter(store):
    a = store.enqueue_job("followup", {"n": 1})
    b = store.enqueue_job("interpret", {"n": 2})
    c = store.enqueue_job("interpret", {"n": 3})
    assert store.claim_job("w", kinds=["interpret"]).id == b.id
    assert store.claim_job("w", kinds=[]) is None
    assert store.claim_job("w").id == a.id
    assert store.claim_job("w", kinds=["interpret", "x"]).id == c.id
    assert store.count_jobs() == {"queued": 0, "running": 3, "done": 0, "failed": 0}


def test_expired_lease_is_reclaimed_and_old_owner_cannot_write(store):
    job = store.enqueue_job("interpret", {})
    store.claim_job("dead-worker", lease_seconds=0.2)
    assert store.claim_job("w2", lease_seconds=30) is None  # lease still valid
    time.sleep(0.35)
    again = store.claim_job("w2", lease_seconds=30)
    assert again.id == job.id and again.lease_owner == "w2"
    assert (again.attempts, again.restarts) == (1, 1)  # a dead worker is not a failed run
    # The first worker wakes up late: its writes must not land.
    assert not store.heartbeat_job(job.id, "dead-worker", 30)
    assert not store.update_job(job.id, progress=0.9, stage="x", worker_id="dead-worker")
    assert not store.finish_job(job.id, {"by": "dead"}, worker_id="dead-worker")
    assert not store.fail_job(job.id, "late failure", worker_id="dead-worker")
    assert store.heartbeat_job(job.id, "w2", 30)
    assert store.finish_job(job.id, {"by": "w2"}, worker_id="w2")
    assert store.get_job(job.id).result == {"by": "w2"}


def test_restart_cap_fails_a_job_that_kills_its_worker_every_time(store):
    job = store.enqueue_job("interpret", {}, max_attempts=1)
    for n in range(MAX_RESTARTS + 1):  # the first run and MAX_RESTARTS restarts all die
        claimed = store.claim_job(f"w{n}", lease_seconds=0.05)
        assert claimed.id == job.id and (claimed.attempts, claimed.restarts) == (1, n)
        time.sleep(0.08)
    assert store.claim_job("last") is None
    failed = store.get_job(job.id)
    assert failed.status == "failed"
    assert f"Gave up after {MAX_RESTARTS} restarts" in failed.error


def test_fail_job_and_release(store):
    j1 = store.enqueue_job("interpret", {})
    j2 = store.enqueue_job("interpret", {})
    store.claim_job("w")
    assert store.fail_job(j1.id, "model missing", worker_id="w")
    assert store.get_job(j1.id).error == "model missing"
    store.claim_job("w")
    assert store.release_job(j2.id, "w")
    released = store.get_job(j2.id)
    assert (released.status, released.attempts, released.lease_owner) == ("queued", 0, None)


def test_requeue_interrupted_requeues_running_and_fails_exhausted(store):
    j1 = store.enqueue_job("interpret", {})
    j2 = store.enqueue_job("interpret", {}, max_attempts=1)
    store.claim_job("w")
    store.claim_job("w")
    with store._write() as c:  # j2 has already been restarted the most a job may be
        c.execute("UPDATE jobs SET restarts = ? WHERE id = ?", (MAX_RESTARTS, j2.id))
    assert store.requeue_interrupted() == 1
    back = store.get_job(j1.id)
    assert (back.status, back.attempts, back.restarts) == ("queued", 0, 1)
    exhausted = store.get_job(j2.id)
    assert exhausted.status == "failed" and "Gave up" in exhausted.error
    again = store.claim_job("w2")
    assert (again.id, again.attempts, again.restarts) == (j1.id, 1, 1)


def test_list_jobs_filters(store):
    a = store.enqueue_job("interpret", {})
    store.enqueue_job("interpret", {})
    store.claim_job("w")
    assert [j.id for j in store.list_jobs(status="running")] == [a.id]
    assert len(store.list_jobs()) == 2
    assert len(store.list_jobs(limit=1)) == 1


def test_concurrent_claims_never_hand_out_a_job_twice(db_url, tmp_path):
    store = open_store(db_url, images_dir=tmp_path / "i")
    ids = {store.enqueue_job("interpret", {"n": i}).id for i in range(40)}
    got: list[str] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        while True:
            job = store.claim_job(name, lease_seconds=60)
            if job is None:
                return
            assert store.finish_job(job.id, {"w": name}, worker_id=name)
            with lock:
                got.append(job.id)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == sorted(ids)
    assert store.count_jobs()["done"] == 40
    store.close()

"""JobRunner: threads claim and run handlers, heartbeats, failures, graceful stop."""

from __future__ import annotations

import threading
import time

from medlens.errors import ModelNotAvailable
from medlens.jobs import EventBus, JobCancelled, JobRunner
from medlens.jobs.testing import HANDLERS
from medlens.store import NewImage
from medlens.tasks.interpret.result import Interpretation, Provenance, ReportSections


def _interp(text: str, study_id: str = "s") -> Interpretation:
    return Interpretation(
        study_id=study_id,
        status="complete",
        report=ReportSections(findings=text, raw_text=text),
        provenance=Provenance(medlens_version="test", created_at="2026-01-01T00:00:00Z"),
    )


def _wait(pred, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def _study(store):
    data = f"img-{time.monotonic_ns()}".encode()
    import hashlib

    sha = hashlib.sha256(data).hexdigest()
    return store.create_study([NewImage(sha, sha, "png", "a.png", data=data)], {})[0]


def test_runner_runs_jobs_with_progress_tokens_and_deferred_writes(store):
    study = _study(store)
    bus = EventBus()
    seen_cancel = []

    def interpret(job, ctx):
        ctx.progress(0.5, "thinking")
        ctx.emit("token", {"text": "Clear "})
        ctx.emit("token", {"text": "lungs."})
        ctx.save_interpretation(_interp("Clear lungs."))
        ctx.add_message("assistant", "Clear lungs.")
        seen_cancel.append(ctx.cancelled)
        return {"ok": True}

    handlers = {"interpret": interpret, **HANDLERS}
    jobs = [store.enqueue_job("interpret", {}, study_id=study.id)]
    jobs += [store.enqueue_job("test-compute", {"sleep": 0.05, "rounds": 100}) for _ in range(5)]
    runner = JobRunner(store, handlers, concurrency=2, events=bus, poll_interval=0.05)
    runner.start()
    try:
        _wait(lambda: store.count_jobs()["done"] == 6)
    finally:
        runner.stop()
    assert store.get_interpretation(study.id) == _interp("Clear lungs.")
    assert [m.content for m in store.list_messages(study.id)] == ["Clear lungs."]
    events = [(e.event, e.data) for e in bus.history(jobs[0].id)]
    assert ("token", {"text": "Clear "}) in events
    assert ("progress", {"progress": 0.5, "stage": "thinking"}) in events
    assert events[-1] == ("done", {"result": {"ok": True}})
    assert seen_cancel == [False]
    assert runner.completed == 6
    assert {store.get_job(j.id).attempts for j in jobs} == {1}


def test_handler_errors_fail_the_job_with_a_message(store):
    def needs_model(job, ctx):
        raise ModelNotAvailable("Weights for google/medgemma-4b-it are missing: medlens pull")

    outcomes = []
    runner = JobRunner(
        store,
        {"interpret": needs_model, **HANDLERS},
        poll_interval=0.05,
        on_outcome=lambda job, outcome, applied: outcomes.append((outcome, applied)),
    )
    a = store.enqueue_job("interpret", {})
    b = store.enqueue_job("test-fail", {"message": "kaboom"})
    assert runner.run_once() and runner.run_once() and not runner.run_once()
    expected = "Weights for google/medgemma-4b-it are missing: medlens pull"
    assert store.get_job(a.id).error == expected
    err = store.get_job(b.id).error
    assert "RuntimeError" in err and "kaboom" in err
    assert outcomes == [("failed", True), ("failed", True)]


def test_unstorable_result_fails_instead_of_half_writing(store):
    study = _study(store)

    def bad(job, ctx):
        ctx.save_interpretation(_interp("x"))
        return {"score": float("inf")}

    runner = JobRunner(store, {"interpret": bad})
    job = store.enqueue_job("interpret", {}, study_id=study.id)
    runner.run_once()
    assert store.get_job(job.id).status == "failed"
    assert store.get_interpretation(study.id) is None


def test_heartbeat_keeps_the_lease_of_a_long_job(store):
    job = store.enqueue_job("test-compute", {"sleep": 1.6, "steps": 4, "rounds": 10})
    runner = JobRunner(store, HANDLERS, lease_seconds=0.6, poll_interval=0.05)
    runner.start()
    try:
        _wait(lambda: store.get_job(job.id).status == "running")
        time.sleep(0.9)  # past the first lease
        assert store.claim_job("intruder", lease_seconds=5) is None
        _wait(lambda: store.get_job(job.id).status == "done")
    finally:
        runner.stop()
    assert store.get_job(job.id).attempts == 1


def test_deleting_the_study_cancels_the_running_job(store):
    study = _study(store)
    started = threading.Event()
    result = {}

    def slow(job, ctx):
        started.set()
        for _ in range(100):
            if ctx.wait_cancelled(0.05):
                result["reason"] = ctx.cancel_reason
                raise JobCancelled(ctx.cancel_reason)
            ctx.progress(0.1, "working")
        return {}

    outcomes = []
    runner = JobRunner(
        store,
        {"interpret": slow},
        lease_seconds=0.6,
        poll_interval=0.05,
        on_outcome=lambda job, outcome, applied: outcomes.append(outcome),
    )
    store.enqueue_job("interpret", {}, study_id=study.id)
    runner.start()
    try:
        assert started.wait(10)
        store.delete_study(study.id)
        _wait(lambda: outcomes == ["lost"])
    finally:
        runner.stop()
    assert "lease lost" in result["reason"]
    assert store.list_jobs() == []


def test_graceful_stop_gives_unfinished_jobs_back(store):
    job = store.enqueue_job("test-compute", {"sleep": 30, "steps": 30, "rounds": 10})
    runner = JobRunner(store, HANDLERS, poll_interval=0.05)
    runner.start()
    _wait(lambda: store.get_job(job.id).status == "running")
    t0 = time.monotonic()
    runner.stop(timeout=0.3)
    assert time.monotonic() - t0 < 5
    back = store.get_job(job.id)
    assert (back.status, back.attempts, back.lease_owner) == ("queued", 0, None)

"""Stage time estimates: durations of finished jobs' stages, their median shown on the next
run of that stage, nothing without history (issue 23)."""

from __future__ import annotations

from pathlib import Path

from medlens.config import Settings
from medlens.jobs import estimates
from medlens.jobs.context import JobContext
from medlens.jobs.estimates import StageTimer, estimate, progress_fields, record
from medlens.jobs.events import EventBus

LOADING = "Loading models (the first run takes longer)"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_timer_sums_each_stage_until_the_next_one():
    clock = FakeClock()
    timer = StageTimer(clock)
    timer.mark(LOADING)
    clock.now += 30
    timer.mark("Loading models (again)")  # same stage, another note: still running
    clock.now += 5
    timer.mark("generate")
    clock.now += 2
    assert timer.finish() == {"Loading models": 35.0, "generate": 2.0}


def test_no_history_no_estimate_then_the_median_of_earlier_runs(tmp_path: Path):
    assert estimate(tmp_path, LOADING) is None
    assert progress_fields(Settings(data_dir=tmp_path), LOADING) == {}
    for seconds in (40.0, 90.0, 44.0):
        record(tmp_path, {"Loading models": seconds, "gate": 0.2})
    found = estimate(tmp_path, LOADING)
    assert found is not None and (found.seconds, found.runs) == (44.0, 3)
    assert found.text == "about 44 s, from 3 earlier runs on this machine"
    assert estimate(tmp_path, "gate") is None  # under a second: never recorded
    fields = progress_fields(Settings(data_dir=tmp_path), LOADING)
    assert fields == {"eta_s": 44.0, "estimate": found.text}
    assert progress_fields(Settings(data_dir=tmp_path), LOADING, status="done") == {}


def test_history_keeps_the_latest_runs_and_survives_a_broken_file(tmp_path: Path):
    for i in range(estimates.KEEP + 5):
        record(tmp_path, {"generate": 10.0 + i})
    runs = estimates.read_history(tmp_path)["generate"]
    assert len(runs) == estimates.KEEP and runs[-1] == 10.0 + estimates.KEEP + 4
    (tmp_path / estimates.HISTORY_FILE).write_text("{not json", "utf-8")
    assert estimate(tmp_path, "generate") is None
    record(tmp_path, {"generate": 3.0})
    assert estimate(tmp_path, "generate").runs == 1


def test_a_finished_job_records_its_stages_and_the_next_job_gets_the_estimate(
    store, tmp_path: Path
):
    settings = Settings(data_dir=tmp_path / "data")
    settings.data_path.mkdir()
    bus = EventBus()
    seen: list[dict] = []
    for run in range(2):
        job = store.enqueue_job("interpret", {})
        claimed = store.claim_job("w1")
        assert claimed is not None and claimed.id == job.id
        bus.subscribe(job.id, lambda ev: seen.append(dict(ev.data)))
        ctx = JobContext(claimed, store=store, worker_id="w1", events=bus, settings=settings)
        clock = FakeClock()
        ctx.timer = StageTimer(clock)
        ctx.progress(0.06, LOADING)
        clock.now += 30 + run * 10
        ctx.progress(0.5, "generate")
        clock.now += 0.1
        ctx.progress(1.0, "Done")
    loading = [e for e in seen if e["stage"] == LOADING]
    assert "estimate" not in loading[0]  # the first run: no history, no estimate
    assert loading[1]["eta_s"] == 30.0
    assert loading[1]["estimate"] == "about 30 s, from 1 earlier run on this machine"
    assert estimates.read_history(settings.data_path) == {"Loading models": [30.0, 40.0]}

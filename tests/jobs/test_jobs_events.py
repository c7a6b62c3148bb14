"""EventBus: replay for late subscribers, async follow, DB-polling fallback."""

from __future__ import annotations

import asyncio
import threading
import time

from medlens.jobs import EventBus, JobRunner
from medlens.jobs.testing import HANDLERS


def test_late_subscriber_gets_the_history_then_live_events():
    bus = EventBus()
    bus.publish("j", "token", {"text": "a"})
    got = []
    unsubscribe = bus.subscribe("j", got.append)
    bus.publish("j", "token", {"text": "b"})
    unsubscribe()
    bus.publish("j", "token", {"text": "c"})
    assert [e.data["text"] for e in got] == ["a", "b"]


def test_history_is_bounded():
    bus = EventBus(max_events_per_job=3, max_jobs=2)
    for i in range(10):
        bus.publish("a", "token", {"i": i})
    bus.publish("a", "done", {})
    assert len(bus.history("a")) == 4 and bus.history("a")[-1].event == "done"
    bus.publish("b", "x")
    bus.publish("c", "x")
    assert bus.history("a") == []


async def _collect(bus, job_id, store, **kw):
    return [e async for e in bus.follow(job_id, store, **kw)]


def test_follow_streams_an_in_process_job(store):
    bus = EventBus()
    job = store.enqueue_job("test-compute", {"sleep": 0.4, "steps": 4, "rounds": 10})
    runner = JobRunner(store, HANDLERS, events=bus, poll_interval=0.05)
    runner.start()
    try:
        events = asyncio.run(_collect(bus, job.id, store, poll_interval=0.2))
    finally:
        runner.stop()
    kinds = [e.event for e in events]
    assert kinds.count("token") == 4
    assert kinds[-1] == "done"
    assert events[-1].data["result"]["digest"]


def test_follow_polls_the_store_for_jobs_run_elsewhere(store):
    job = store.enqueue_job("interpret", {})

    def other_process():
        time.sleep(0.2)
        claimed = store.claim_job("elsewhere")
        store.update_job(claimed.id, progress=0.5, stage="halfway")
        time.sleep(0.4)
        store.finish_job(claimed.id, {"r": 1})

    t = threading.Thread(target=other_process)
    t.start()
    events = asyncio.run(_collect(EventBus(), job.id, store, poll_interval=0.1))
    t.join()
    assert ("progress", "halfway") in [(e.event, e.data.get("stage")) for e in events]
    assert events[-1].event == "done" and events[-1].data == {"result": {"r": 1}}


def test_follow_reports_a_vanished_job(store):
    events = asyncio.run(_collect(EventBus(), "missing", store, poll_interval=0.05))
    assert [e.event for e in events] == ["failed"]

"""In-process pub/sub of job events, so SSE streams can follow progress and tokens.

Workers (threads) publish; subscribers are sync callbacks or asyncio consumers (the
server's SSE endpoints). Each running job keeps a short history that a late subscriber
replays first, so a page that connects after the first tokens still sees the whole
report. For jobs run by another process (a `medlens worker` on PostgreSQL) nothing is
published here: `follow()` then polls the store for progress and the final state.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from medlens.store.base import Job

TERMINAL_EVENTS = frozenset({"done", "failed"})


@dataclass(frozen=True)
class JobEvent:
    job_id: str
    event: str  # progress | token | done | failed | <handler-defined>
    data: dict[str, Any] = field(default_factory=dict)


Subscriber = Callable[[JobEvent], None]


def event_for_job(job: Job) -> JobEvent | None:
    """The terminal event a finished job stands for (None while it is not finished)."""
    if job.status == "done":
        return JobEvent(job.id, "done", {"result": job.result})
    if job.status == "failed":
        return JobEvent(job.id, "failed", {"error": job.error or "failed"})
    return None


class EventBus:
    """Thread-safe; histories are capped per job and in number of jobs kept."""

    def __init__(self, *, max_events_per_job: int = 4000, max_jobs: int = 64) -> None:
        self._lock = threading.Lock()
        self._subs: dict[str, list[Subscriber]] = {}
        self._history: OrderedDict[str, list[JobEvent]] = OrderedDict()
        self._max_events = max_events_per_job
        self._max_jobs = max_jobs

    def publish(self, job_id: str, event: str, data: dict[str, Any] | None = None) -> None:
        ev = JobEvent(job_id, event, dict(data or {}))
        with self._lock:
            hist = self._history.setdefault(job_id, [])
            self._history.move_to_end(job_id)
            if len(hist) < self._max_events or event in TERMINAL_EVENTS:
                hist.append(ev)
            while len(self._history) > self._max_jobs:
                self._history.popitem(last=False)
            subs = list(self._subs.get(job_id, ()))
        for sub in subs:
            sub(ev)  # subscribers must not block (queue puts only)

    def subscribe(self, job_id: str, callback: Subscriber) -> Callable[[], None]:
        """Register `callback` after replaying the job's history; returns unsubscribe."""
        with self._lock:
            replay = list(self._history.get(job_id, ()))
            self._subs.setdefault(job_id, []).append(callback)
        for ev in replay:
            callback(ev)

        def unsubscribe() -> None:
            with self._lock:
                subs = self._subs.get(job_id, [])
                if callback in subs:
                    subs.remove(callback)
                if not subs:
                    self._subs.pop(job_id, None)

        return unsubscribe

    def history(self, job_id: str) -> list[JobEvent]:
        with self._lock:
            return list(self._history.get(job_id, ()))

    async def follow(
        self,
        job_id: str,
        store: Any,
        *,
        poll_interval: float = 0.5,
        keepalive: float | None = None,
    ) -> AsyncIterator[JobEvent]:
        """Yield a job's events until it is done or failed (or vanished: 'failed').

        `store.get_job` runs in a thread (never blocks the loop). With `keepalive`,
        a `keepalive` event is yielded after that many idle seconds (SSE comments).
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[JobEvent] = asyncio.Queue()

        def on_event(ev: JobEvent) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, ev)

        unsubscribe = self.subscribe(job_id, on_event)
        last_progress: tuple[float, str] | None = None
        idle = 0.0
        try:
            while True:
                try:
                    ev = await asyncio.wait_for(queue.get(), timeout=poll_interval)
                except TimeoutError:
                    job = await asyncio.to_thread(store.get_job, job_id)
                    if job is None:
                        yield JobEvent(job_id, "failed", {"error": "job not found (deleted?)"})
                        return
                    final = event_for_job(job)
                    if final is not None:
                        # Drain what the worker published just before finishing.
                        while not queue.empty():
                            ev = queue.get_nowait()
                            yield ev
                            if ev.event in TERMINAL_EVENTS:
                                return
                        yield final
                        return
                    if (job.progress, job.stage) != last_progress:
                        last_progress = (job.progress, job.stage)
                        idle = 0.0
                        yield JobEvent(
                            job_id, "progress", {"progress": job.progress, "stage": job.stage}
                        )
                        continue
                    idle += poll_interval
                    if keepalive is not None and idle >= keepalive:
                        idle = 0.0
                        yield JobEvent(job_id, "keepalive", {})
                    continue
                idle = 0.0
                if ev.event == "progress":
                    last_progress = (float(ev.data.get("progress", 0)), str(ev.data.get("stage")))
                yield ev
                if ev.event in TERMINAL_EVENTS:
                    return
        finally:
            unsubscribe()

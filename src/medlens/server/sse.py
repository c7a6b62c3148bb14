"""Server-sent events: the wire format and a job's event stream.

Events come from the job runner's EventBus (`bus.follow(job_id, store)`), which replays a
running job's history first (a page that reconnects, or opens after the job finished,
still gets everything), then follows live progress and report tokens, and ends with
`done` or `failed`. Without a bus (or for jobs of another process) the store is polled.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool

from medlens.jobs import estimates
from medlens.server.state import ServerState
from medlens.store.base import Job

POLL_S = 0.3
KEEPALIVE_S = 15.0
_FINAL = ("done", "failed")


def format_event(event: str, data: Any, event_id: int | None = None) -> bytes:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event}")
    lines.append(
        "data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    )
    return ("\n".join(lines) + "\n\n").encode()


def job_view(job: Job, settings: Any = None) -> dict[str, Any]:
    return {
        **estimates.progress_fields(settings, job.stage, job.status),
        "id": job.id,
        "status": job.status,
        "progress": round(job.progress, 4),
        "stage": job.stage,
        "study_id": job.study_id,
        "kind": job.kind,
        "error": job.error,
    }


async def job_events(
    state: ServerState, job_id: str, is_disconnected: Callable[[], Awaitable[bool]]
) -> AsyncIterator[bytes]:
    seq = 0
    source = (
        _bus_events(state, job_id)
        if state.bus is not None and hasattr(state.bus, "follow")
        else _poll_events(state, job_id)
    )
    try:
        async for event, data in source:
            seq += 1
            yield format_event(event, data, seq)
            if event in _FINAL or await is_disconnected():
                return
    finally:
        await source.aclose()  # type: ignore[attr-defined]


async def _bus_events(state: ServerState, job_id: str) -> AsyncIterator[tuple[str, Any]]:
    follow = state.bus.follow(job_id, state.store, poll_interval=POLL_S, keepalive=KEEPALIVE_S)
    try:
        async for ev in follow:
            if ev.event == "keepalive":
                yield "ping", {}
                continue
            data = dict(ev.data) if isinstance(ev.data, dict) else {"value": ev.data}
            if ev.event in _FINAL or ev.event == "progress":
                job = await run_in_threadpool(state.store.get_job, job_id)
                if job is not None:
                    data = {**job_view(job, state.settings), **data}
            yield ev.event, data
            if ev.event in _FINAL:
                return
    finally:
        await follow.aclose()


async def _poll_events(state: ServerState, job_id: str) -> AsyncIterator[tuple[str, Any]]:
    last: tuple[str, float, str] | None = None
    idle = 0.0
    while True:
        job = await run_in_threadpool(state.store.get_job, job_id)
        if job is None:
            yield "failed", {"id": job_id, "status": "failed", "error": "The job was deleted."}
            return
        current = (job.status, job.progress, job.stage)
        if current != last:
            last = current
            idle = 0.0
            yield "progress", job_view(job, state.settings)
        if job.status in _FINAL:
            yield job.status, {**job_view(job), "result": job.result}
            return
        await asyncio.sleep(POLL_S)
        idle += POLL_S
        if idle >= KEEPALIVE_S:
            idle = 0.0
            yield "ping", {}

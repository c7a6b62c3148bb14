"""Persisted jobs run by a bounded pool of worker threads (runner.py), with live events
for SSE (events.py). Handlers are plain functions registered by job kind."""

from __future__ import annotations

from medlens.jobs.context import Handler, JobContext
from medlens.jobs.events import EventBus, JobEvent
from medlens.jobs.runner import JobCancelled, JobRunner, default_worker_id

__all__ = [
    "EventBus",
    "Handler",
    "JobCancelled",
    "JobContext",
    "JobEvent",
    "JobRunner",
    "default_worker_id",
]

"""A bounded pool of worker threads that claim jobs from the store and run handlers.

Threads, not asyncio: model calls block and release the GIL in torch/llama.cpp. Each
claimed job holds a lease that a heartbeat thread extends while its handler runs; if
this process dies, the lease expires and any worker (here after a restart, or another
`medlens worker`) claims the job again. A job's result, interpretation and messages are
written in the one transaction that marks it done, and only while this worker still
owns the lease, so a job never ends half-written or finished twice.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from medlens.errors import MedLensError
from medlens.jobs.context import Handler, JobContext
from medlens.jobs.events import EventBus
from medlens.store.base import Job

log = logging.getLogger(__name__)

Outcome = Callable[[Job, str, bool], None]  # (job, "done"|"failed"|"released"|"lost", applied)


class JobCancelled(Exception):
    """Raised by a handler that noticed `ctx.cancelled` and stopped early."""


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def error_message(exc: BaseException) -> str:
    if isinstance(exc, MedLensError):
        return str(exc)
    return f"Internal error while running the job ({type(exc).__name__}: {exc})"


class JobRunner:
    def __init__(
        self,
        store: Any,
        handlers: Mapping[str, Handler],
        *,
        concurrency: int = 1,
        worker_id: str | None = None,
        lease_seconds: float = 60.0,
        poll_interval: float = 0.5,
        events: EventBus | None = None,
        settings: Any = None,
        on_outcome: Outcome | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.store = store
        self.handlers = dict(handlers)
        self.concurrency = concurrency
        self.worker_id = worker_id or default_worker_id()
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.events = events if events is not None else EventBus()
        self.settings = settings
        self.on_outcome = on_outcome
        self._stop = threading.Event()
        self._hb_stop = threading.Event()  # heartbeats go on while stop() waits
        self._wake = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._running: dict[str, JobContext] = {}
        self._running_lock = threading.Lock()
        self.completed = 0

    # --- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        if self._threads:
            return
        self._stop.clear()
        self._hb_stop.clear()
        for i in range(self.concurrency):
            t = threading.Thread(target=self._loop, name=f"medlens-job-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        hb = threading.Thread(target=self._heartbeat_loop, name="medlens-job-hb", daemon=True)
        hb.start()
        self._threads.append(hb)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming; let running handlers finish for `timeout` s, then cancel them
        and give their jobs back to the queue (attempt not counted)."""
        self._stop.set()
        self.wake()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            if t.name != "medlens-job-hb":
                t.join(max(0.0, deadline - time.monotonic()))
        with self._running_lock:
            leftover = list(self._running.values())
        for ctx in leftover:
            ctx.cancel("runner stopping")
            try:
                if self.store.release_job(ctx.job.id, self.worker_id):
                    self._report(ctx.job, "released", True)
            except Exception:  # store gone: the lease will expire instead
                log.exception("could not release job %s", ctx.job.id)
        self._hb_stop.set()
        for t in self._threads:
            t.join(1.0)
        self._threads = []

    def wake(self) -> None:
        """Tell idle workers a job was enqueued (skips the poll delay)."""
        with self._wake:
            self._wake.notify_all()

    @property
    def in_flight(self) -> list[str]:
        with self._running_lock:
            return list(self._running)

    # --- work ----------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                ran = self.run_once()
            except Exception:
                log.exception("job worker: store error; retrying")
                ran = False
            if not ran and not self._stop.is_set():
                with self._wake:
                    self._wake.wait(self.poll_interval)

    def run_once(self) -> bool:
        """Claim and run one job in the calling thread; False when none was queued."""
        job = self.store.claim_job(
            self.worker_id, lease_seconds=self.lease_seconds, kinds=sorted(self.handlers)
        )
        if job is None:
            return False
        self._run(job)
        return True

    def _run(self, job: Job) -> None:
        ctx = JobContext(
            job,
            store=self.store,
            worker_id=self.worker_id,
            events=self.events,
            settings=self.settings,
        )
        with self._running_lock:
            self._running[job.id] = ctx
        try:
            self.events.publish(job.id, "progress", {"progress": 0.0, "stage": "starting"})
            try:
                result = self.handlers[job.kind](job, ctx)
            except JobCancelled:
                self._report(job, "lost", False)
                return
            except Exception as exc:
                if not isinstance(exc, MedLensError):
                    log.exception("job %s (%s) failed", job.id, job.kind)
                self._fail(job, error_message(exc))
                return
            try:
                applied = self.store.finish_job(
                    job.id,
                    result,
                    worker_id=self.worker_id,
                    interpretation=ctx.interpretation,
                    messages=ctx.messages,
                )
            except Exception as exc:  # e.g. a result that is not JSON
                log.exception("job %s: could not store the result", job.id)
                self._fail(job, error_message(exc))
                return
            if applied:
                self.completed += 1
                self.events.publish(job.id, "done", {"result": result})
            self._report(job, "done" if applied else "lost", applied)
        finally:
            with self._running_lock:
                self._running.pop(job.id, None)

    def _fail(self, job: Job, message: str) -> None:
        """Fail the job (if this worker still holds its lease) and tell the listeners."""
        applied = self.store.fail_job(job.id, message, worker_id=self.worker_id)
        if applied:
            self.events.publish(job.id, "failed", {"error": message})
        self._report(job, "failed", applied)

    def _report(self, job: Job, outcome: str, applied: bool) -> None:
        log.info("job %s %s %s (applied=%s)", job.id, job.kind, outcome, applied)
        if self.on_outcome is not None:
            try:
                self.on_outcome(job, outcome, applied)
            except Exception:
                log.exception("on_outcome callback failed")

    def _heartbeat_loop(self) -> None:
        interval = max(0.2, self.lease_seconds / 3)
        while not self._hb_stop.wait(interval):
            with self._running_lock:
                running = list(self._running.values())
            for ctx in running:
                try:
                    if not self.store.heartbeat_job(ctx.job.id, self.worker_id, self.lease_seconds):
                        ctx.cancel("lease lost or job deleted")
                except Exception:
                    log.exception("heartbeat for job %s failed", ctx.job.id)

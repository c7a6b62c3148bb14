"""Test job kinds: real but small work, for runner, worker and scale-out tests.

Not registered by default. `medlens worker --handlers medlens.jobs.testing:HANDLERS`
(or MEDLENS_JOB_HANDLERS) enables them. `compute` hashes for a while, sleeps (as a
model waiting on an accelerator would) and, when the payload names a `log` file, appends
one line per completed execution so tests can count executions per job.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from medlens.jobs.context import Handler, JobContext
from medlens.jobs.runner import JobCancelled
from medlens.store.base import Job


def compute(job: Job, ctx: JobContext) -> dict[str, Any]:
    rounds = int(job.payload.get("rounds", 2000))
    sleep_s = float(job.payload.get("sleep", 0.1))
    steps = max(1, int(job.payload.get("steps", 4)))
    digest = str(job.payload.get("seed", job.id)).encode()
    for step in range(steps):
        for _ in range(rounds // steps):
            digest = hashlib.sha256(digest).digest()
        if ctx.wait_cancelled(sleep_s / steps):
            raise JobCancelled(ctx.cancel_reason or "cancelled")
        ctx.progress((step + 1) / steps, f"step {step + 1}/{steps}")
        ctx.emit("token", {"text": f"{step} "})
    log_path = job.payload.get("log")
    if log_path:
        # O_APPEND writes of one short line are atomic between processes.
        line = f"{job.id} {ctx.worker_id}\n".encode()
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    return {"digest": digest.hex(), "worker": ctx.worker_id, "pid": os.getpid()}


def fail(job: Job, ctx: JobContext) -> dict[str, Any]:
    raise RuntimeError(str(job.payload.get("message", "boom")))


HANDLERS: dict[str, Handler] = {"test-compute": compute, "test-fail": fail}

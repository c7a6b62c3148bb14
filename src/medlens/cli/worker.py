"""`medlens worker`: process queued jobs from the store, any number per database.

Run several (on several machines) against one PostgreSQL database: they share the queue
through `FOR UPDATE SKIP LOCKED` leases, and a job whose worker dies is retried by
another once its lease expires. On the embedded SQLite store, run one worker (or let
`medlens serve` run jobs itself).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any

import typer

from medlens.cli.common import settings_from
from medlens.errors import ConfigError


def _print_outcome(job: Any, outcome: str, applied: bool) -> None:
    # One line per outcome on stdout: operators can grep it, tests count it.
    if applied or outcome == "lost":
        sys.stdout.write(f"{outcome} {job.id} {job.kind} attempt={job.attempts}\n")
        sys.stdout.flush()


def worker(
    concurrency: int = typer.Option(
        None, "--concurrency", "-c", min=1, max=64, help="Jobs run at once (default: workers)."
    ),
    database_url: str = typer.Option(
        None, "--database-url", help="postgresql://... or sqlite:///path (default: settings)."
    ),
    handlers: list[str] = typer.Option(
        [], "--handlers", help="Extra handler map 'module:ATTR' (repeatable)."
    ),
    kinds: list[str] = typer.Option([], "--kind", help="Only run these job kinds (repeatable)."),
    lease_seconds: float = typer.Option(
        60.0, "--lease-seconds", min=0.5, help="Lease length; a dead worker's job waits this."
    ),
    requeue_interrupted: bool = typer.Option(
        False,
        "--requeue-interrupted",
        help="At start, requeue every 'running' job. Only when this is the ONLY worker.",
    ),
    exit_when_idle: bool = typer.Option(
        False, "--exit-when-idle", help="Stop once no job is queued or running."
    ),
    stop_timeout: float = typer.Option(
        30.0, "--stop-timeout", min=0.0, help="On SIGTERM, seconds running jobs may finish."
    ),
    poll_interval: float = typer.Option(0.5, "--poll-interval", min=0.01, hidden=True),
) -> None:
    """Run queued jobs (interpretations, follow-ups) until stopped (Ctrl-C / SIGTERM)."""
    from medlens.jobs import JobRunner
    from medlens.jobs.loading import load_handlers
    from medlens.store import open_store

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = settings_from(database_url=database_url)
    found = load_handlers(handlers)
    if kinds:
        missing = sorted(set(kinds) - set(found))
        if missing:
            raise ConfigError(f"No handler for job kind(s) {missing}; known: {sorted(found)}")
        found = {k: v for k, v in found.items() if k in kinds}
    if not found:
        raise ConfigError("No job handlers available: nothing to run.")
    store = open_store(settings)
    if requeue_interrupted:
        typer.echo(f"requeued {store.requeue_interrupted()} interrupted job(s)")
    from medlens.jobs.deliver import requeue_pending

    if pending := requeue_pending(store):  # undelivered results from before the last stop
        typer.echo(f"re-queued result delivery for {len(pending)} study(ies)")
    runner = JobRunner(
        store,
        found,
        concurrency=concurrency or settings.workers,
        lease_seconds=lease_seconds,
        poll_interval=poll_interval,
        settings=settings,
        on_outcome=_print_outcome,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    typer.echo(
        f"worker {runner.worker_id}: kinds {sorted(found)}, concurrency {runner.concurrency}",
    )
    sys.stdout.flush()
    runner.start()
    try:
        while not stop.wait(max(poll_interval, 0.2)):
            if exit_when_idle:
                counts = store.count_jobs()
                if counts["queued"] == 0 and counts["running"] == 0 and not runner.in_flight:
                    break
    finally:
        runner.stop(timeout=stop_timeout)
        store.close()
    typer.echo(f"worker {runner.worker_id}: stopped after {runner.completed} job(s)")


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)

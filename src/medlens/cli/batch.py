"""`medlens batch DIR|CSV`: queue a whole archive (e.g. a night's studies) for interpretation.

By default the jobs run here, in this process, with a progress bar. With `--no-run`
they are left to `medlens worker` processes (PostgreSQL deployments) and this command
only watches; with `--no-wait` it queues and exits. `--export` writes the results.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from medlens.cli.common import settings_from
from medlens.config import for_demo
from medlens.errors import ConfigError


def batch(
    source: Path = typer.Argument(..., help="Folder of images, or CSV with a 'path' column."),
    database_url: str = typer.Option(None, "--database-url", help="Default: settings."),
    export: Path = typer.Option(None, "--export", help="Write results to out.jsonl or out.csv."),
    run: bool = typer.Option(True, "--run/--no-run", help="Run jobs here (else: workers)."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until every job ends."),
    workers: int = typer.Option(None, "--workers", min=1, max=64, help="Threads for --run."),
    group_by_folder: bool = typer.Option(
        False, "--group-by-folder", help="Files in one folder form one study."
    ),
    demo: bool = typer.Option(
        False, "--demo", help="Test models (output is meaningless); without a data dir its "
        "studies live in ~/.medlens/demo, out of the real History."
    ),
    job_kind: str = typer.Option("interpret", "--job-kind", hidden=True),
    handlers: list[str] = typer.Option([], "--handlers", hidden=True),
) -> None:
    """Ingest, de-identify and queue every image of DIR or CSV; show progress; export."""
    from medlens.jobs.batch import collect
    from medlens.store import open_store

    if export is not None and export.suffix.lower() not in (".jsonl", ".csv"):
        raise ConfigError(f"--export {export}: use a .jsonl or .csv file name.")
    # demo: the demo folder, as `serve --demo`; jobs.batch marks its studies demo
    settings = for_demo(settings_from(database_url=database_url, demo=demo or None))
    items = collect(source.expanduser(), group_by_folder=group_by_folder)
    if not items:
        raise ConfigError(f"{source}: no input files found.")
    store = open_store(settings)
    runner = None
    try:
        if run:
            runner = _start_runner(store, settings, job_kind, handlers, workers)
        submitted = _submit_and_watch(store, settings, items, job_kind, runner, wait)
        _report(store, submitted, export)
    finally:
        if runner is not None:
            runner.stop()
        store.close()


def _start_runner(
    store: Any, settings: Any, job_kind: str, handlers: list[str], workers: int | None
) -> Any:
    """A job runner in this process for `job_kind` (started)."""
    from medlens.jobs import JobRunner
    from medlens.jobs.loading import load_handlers

    found = load_handlers(handlers)
    if job_kind not in found:
        raise ConfigError(f"No handler for '{job_kind}' jobs in this installation.")
    runner = JobRunner(
        store, {job_kind: found[job_kind]}, settings=settings,
        concurrency=workers or settings.workers,
    )  # fmt: skip
    runner.start()
    return runner


def _submit_and_watch(
    store: Any, settings: Any, items: list[Any], job_kind: str, runner: Any, wait: bool
) -> list[Any]:
    """Queue every item with a progress bar; with `wait`, follow the jobs to their end."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from medlens.jobs.batch import submit

    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=False) as progress:
        queued = progress.add_task("ingest", total=len(items))

        def on_item(sub: object) -> None:
            progress.advance(queued)
            if runner is not None:
                runner.wake()

        submitted = submit(store, settings, items, kind=job_kind, on_item=on_item)
        pending = {s.job_id for s in submitted if s.job_id}
        if wait and pending:
            task = progress.add_task("jobs", total=len(pending))
            while pending:
                for job_id in list(pending):
                    job = store.get_job(job_id)
                    if job is None or job.status in ("done", "failed"):
                        pending.discard(job_id)
                        progress.advance(task)
                time.sleep(0.3)
    return submitted


def _report(store: Any, submitted: list[Any], export: Path | None) -> None:
    """Counts per status, each refusal with its reason, and the export."""
    from medlens.jobs.batch import export as export_results

    counts: dict[str, int] = {}
    for s in submitted:
        job = store.get_job(s.job_id) if s.job_id else None
        status = "refused" if s.error else (job.status if job else "missing")
        counts[status] = counts.get(status, 0) + 1
    typer.echo(", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    for s in submitted:
        if s.error:
            typer.echo(f"refused {s.item.key}: {s.error}", err=True)
    if export is not None:
        n = export_results(store, submitted, export)
        typer.echo(f"exported {n} record(s) to {export}")


def register(app: typer.Typer) -> None:
    app.command("batch")(batch)

"""`medlens listen`: receive studies from the PACS and queue their interpretation.

Runs a DICOM C-STORE SCP (configured nodes only, loopback by default) and, when
MEDLENS_ORTHANC_URL is set, a poller on Orthanc's `/changes` feed. Jobs are queued in the
store; `--run-jobs` also runs them here (else `medlens serve` or `medlens worker` does).
One line per study on stdout (`queued|duplicate|skipped|refused|late ref=…`), never a
patient identifier. Stops on Ctrl-C / SIGTERM, after the study being taken in.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any

import typer

from medlens.cli.common import settings_from


def _print(outcome: Any) -> None:
    sys.stdout.write(outcome.line() + "\n")
    sys.stdout.flush()


def listen(
    host: str = typer.Option(None, "--host", help="Bind address (default: dicom_listen_host)."),
    port: int = typer.Option(
        None, "--port", min=0, max=65535, help="DICOM port (default: dicom_listen_port)."
    ),
    quiet_seconds: float = typer.Option(
        None, "--quiet-seconds", min=0, help="Study complete after this long without news."
    ),
    poll: bool = typer.Option(
        True, "--poll/--no-poll", help="Poll Orthanc's /changes (when MEDLENS_ORTHANC_URL is set)."
    ),
    run_jobs: bool = typer.Option(False, "--run-jobs", help="Also run the queued jobs here."),
    database_url: str = typer.Option(None, "--database-url", help="Store (default: settings)."),
) -> None:
    """Receive DICOM (C-STORE) from the configured nodes and auto-interpret chest X-rays."""
    from medlens.integrations.listener import Listener
    from medlens.store import open_store

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    settings = settings_from(database_url=database_url)
    if not settings.auto_interpret.enabled:
        typer.echo(
            "warning: auto_interpret.enabled is false: studies are received and audited, "
            "not interpreted",
            err=True,
        )
    store = open_store(settings)
    listener = Listener(store, settings, host=host, port=port, quiet_seconds=quiet_seconds)
    listener.on_outcome = _print
    poller = _poller(store, settings) if poll and settings.orthanc_url else None
    runner = _runner(store, settings) if run_jobs else None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    listener.start()
    typer.echo(f"listening as {settings.local_ae_title} on {listener.host}:{listener.port}")
    if poller is not None:
        poller.start()
        typer.echo(f"polling {settings.orthanc_url}/changes")
    sys.stdout.flush()
    try:
        stop.wait()
    finally:
        listener.stop()
        if poller is not None:
            poller.stop()
        if runner is not None:
            runner.stop(timeout=30)
        store.close()
    typer.echo("listener stopped")


def _poller(store: Any, settings: Any) -> Any:
    from medlens.integrations.orthanc_changes import ChangesPoller

    return ChangesPoller(store, settings, on_outcome=_print)


def _runner(store: Any, settings: Any) -> Any:
    from medlens.jobs import JobRunner
    from medlens.jobs.handlers import HANDLERS

    runner = JobRunner(store, HANDLERS, concurrency=settings.workers, settings=settings)
    runner.start()
    return runner


def register(app: typer.Typer) -> None:
    app.command("listen")(listen)

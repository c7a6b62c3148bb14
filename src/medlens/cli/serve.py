"""`medlens serve`: the X-ray Interpreter page and HTTP API on uvicorn."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medlens.cli.common import settings_from
from medlens.config import Settings, for_demo


def _help(name: str) -> str:
    return Settings.model_fields[name].description or ""


def serve(
    host: Annotated[str | None, typer.Option(help=_help("host"))] = None,
    port: Annotated[int | None, typer.Option(help=_help("port"))] = None,
    demo: Annotated[
        bool | None,
        typer.Option(
            "--demo/--no-demo",
            help="Run the built-in test models under a DEMO banner "
            "(output is meaningless). Same as MEDLENS_DEMO=1. Without --data-dir "
            "or MEDLENS_DATA_DIR its studies live in ~/.medlens/demo.",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help=_help("data_dir") + " [env: MEDLENS_DATA_DIR]")
    ] = None,
    workers: Annotated[int | None, typer.Option(help=_help("workers"))] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the X-ray Interpreter (web page + API) on the embedded store."""
    import uvicorn

    from medlens.server.app import create_app
    from medlens.server.security import check_bind, is_loopback

    settings = for_demo(
        settings_from(host=host, port=port, demo=demo, data_dir=data_dir, workers=workers)
    )
    check_bind(
        settings.host,
        settings,
        has_users=not is_loopback(settings.host) and _has_users(settings),
    )
    app = create_app(settings)
    shown = f"[{settings.host}]" if ":" in settings.host else settings.host
    typer.echo(
        f"MedLens serving on http://{shown}:{settings.port}  (data: {settings.data_path})"
        + (
            "  DEMO MODE: test models, output is meaningless; demo studies stay out of "
            "the real History"
            if settings.demo
            else ""
        )
    )
    typer.echo(f"Report model: {_model_path_line(settings)}")
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )


def _model_path_line(settings: Settings) -> str:
    """Which generator runs, on which path, why, and how to switch (fastpath/cpu_default)."""
    from medlens.errors import MedLensError
    from medlens.models.fastpath.cpu_default import describe
    from medlens.models.registry import load_registry
    from medlens.models.session import configured_id

    model = configured_id(settings, "generator")
    try:
        record = load_registry(settings).resolve(model, kind="generator")
    except MedLensError as exc:
        return f"{model} ({exc})"
    return f"{record.id} on {describe(record, settings.device).line()}"


def _has_users(settings: Settings) -> bool:
    """Whether the store has accounts (then auth is on without MEDLENS_API_TOKENS)."""
    from medlens.store import open_store

    store = open_store(settings)
    try:
        return bool(store.has_users())
    finally:
        store.close()


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)

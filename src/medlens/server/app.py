"""`create_app(settings)`: the FastAPI app for the page and the API.

Layers, outermost first: security headers + Host check, streaming body cap, routes.
The store is opened and the job runner started in the lifespan; models load lazily in
the worker threads (never on the event loop).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

import medlens
from medlens.config import Settings, load_settings
from medlens.disclaimer import DISCLAIMER
from medlens.server.errors import install_error_handlers
from medlens.server.headers import SecurityHeadersMiddleware
from medlens.server.limits import BodySizeLimitMiddleware
from medlens.server.metrics import MetricsMiddleware, make_metrics
from medlens.server.ratelimit import RateLimiter
from medlens.server.security import Sessions, session_secret
from medlens.server.state import ServerState

log = logging.getLogger("medlens.server")
HERE = Path(__file__).parent


def _open_store(settings: Settings) -> Any:
    from medlens.store import open_store

    return open_store(settings)


def _start_runner(state: ServerState) -> None:
    from medlens.jobs import EventBus, JobRunner
    from medlens.jobs.handlers import HANDLERS

    state.bus = EventBus()
    state.runner = JobRunner(
        state.store,
        HANDLERS,
        concurrency=state.settings.workers,
        settings=state.settings,
        events=state.bus,
    )
    state.runner.start()


def create_app(
    settings: Settings | None = None, *, store: Any = None, run_jobs: bool = True
) -> FastAPI:
    """The app. `store` overrides the settings' store; `run_jobs=False` leaves jobs queued
    (for a deployment whose jobs run in separate `medlens worker` processes)."""
    settings = settings or load_settings()
    settings.data_path.mkdir(parents=True, exist_ok=True)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = ServerState(
            settings=settings,
            store=store if store is not None else _open_store(settings),
            sessions=Sessions(session_secret(settings)),
            limiter=RateLimiter(settings.rate_limit_per_minute),
            metrics=app.state.metrics,
        )
        app.state.medlens = state
        app.state.settings = settings
        app.state.sessions = state.sessions
        # Embedded (SQLite, one server process): whatever is 'running' was left by a dead
        # process. A shared PostgreSQL may have live workers elsewhere: leases expire instead.
        if str(state.store.url).startswith("sqlite"):
            requeued = state.store.requeue_interrupted()
            if requeued:
                log.warning("requeued %d interrupted job(s)", requeued)
        if run_jobs:
            from medlens.jobs.deliver import requeue_pending

            # Results that a PACS/EHR had not accepted before the last stop go out again.
            if pending := requeue_pending(state.store):
                log.warning("re-queued result delivery for %d study(ies)", len(pending))
            _start_runner(state)
        try:
            yield
        finally:
            if state.runner is not None:
                state.runner.stop()
            if "inference_queue" in state.extra:  # waiting chats are dropped, not run
                state.extra["inference_queue"].shutdown()
            if store is None:
                state.store.close()

    app = FastAPI(
        title="MedLens X-ray Interpreter",
        version=medlens.__version__,
        description=f"**{DISCLAIMER}**\n\nUpload chest X-rays, follow jobs, read draft reports "
        "(JSON or FHIR R4 DiagnosticReport), ask follow-ups; OpenAI-compatible chat.",
        lifespan=lifespan,
        # FastAPI's Swagger/ReDoc pages load scripts from a CDN and inline: CSP forbids
        # both, so /docs is our own server-rendered page over /openapi.json.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served by routes/apidocs.py, behind auth when auth is on
    )
    app.state.settings = settings
    app.state.metrics = make_metrics(lambda: _queued(app))
    install_error_handlers(app)

    from medlens.server.routes import api, apidocs, health, openai_compat, page, review, sso

    app.include_router(api.router)
    app.include_router(openai_compat.router)
    app.include_router(health.router)
    app.include_router(apidocs.router)
    app.include_router(review.router)
    app.include_router(page.router)
    app.include_router(sso.router)  # /auth/oidc/*: answers only when OIDC is configured
    from medlens.server.routes import hooks  # POST /v1/hooks/orthanc (wakes the poller)

    app.include_router(hooks.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_upload_mb * 1024 * 1024)
    app.add_middleware(SecurityHeadersMiddleware, settings=settings)
    return app


def _queued(app: FastAPI) -> float:
    state = getattr(app.state, "medlens", None)
    if state is None:
        return 0.0
    try:
        return float(len(state.store.list_jobs(status="queued", limit=10_000)))
    except Exception:
        return float("nan")

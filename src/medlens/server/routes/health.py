"""Liveness (open: load balancers probe it; it reveals no study data) and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

import medlens
from medlens.server.deps import get_state
from medlens.server.schemas import Health
from medlens.server.security import authenticate
from medlens.server.services.modelstatus import model_status
from medlens.server.state import ServerState

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz(state: ServerState = Depends(get_state)) -> Health:
    def work() -> Health:
        try:
            queued = len(state.store.list_jobs(status="queued", limit=10_000))
            store_ok = True
        except Exception:
            queued, store_ok = 0, False
        models = model_status(state.settings)
        return Health(
            status="ok" if store_ok else "degraded",
            version=medlens.__version__,
            store=state.store.url.split(":", 1)[0] if store_ok else "unavailable",
            demo=state.settings.demo,
            models_ready=models.ready,
            workers=state.settings.workers if state.runner is not None else 0,
            queued_jobs=queued,
        )

    health = await run_in_threadpool(work)
    return health


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}, 401: {}, 403: {}},
)
async def metrics(request: Request, state: ServerState = Depends(get_state)) -> Response:
    """Prometheus metrics (needs a token when tokens are configured; not rate limited)."""
    await run_in_threadpool(authenticate, request)  # it may query the store (users)
    body = await run_in_threadpool(state.metrics.render)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

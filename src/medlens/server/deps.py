"""FastAPI dependencies shared by the routers: state, caller, rate limit, audit."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from medlens.server.ratelimit import caller_key
from medlens.server.security import Actor, authenticate
from medlens.server.state import ServerState


def get_state(request: Request) -> ServerState:
    return request.app.state.medlens


def api_actor(request: Request) -> Actor:
    """Authenticate, then count the request against the caller's rate limit."""
    actor = authenticate(request)
    state: ServerState = request.app.state.medlens
    host = request.client.host if request.client is not None else None
    state.limiter.check(caller_key(actor, host))
    request.state.actor = actor
    return actor


def audit(
    state: ServerState,
    actor: Actor | str,
    action: str,
    *,
    study_id: str | None = None,
    outcome: str = "ok",
    detail: dict[str, Any] | None = None,
) -> None:
    name = actor.name if isinstance(actor, Actor) else actor
    state.store.audit(name, action, study_id=study_id, outcome=outcome, detail=detail or {})

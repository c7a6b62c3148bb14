"""`/openapi.json`, and the guard it shares with the `/docs` page.

The schema lists every route and parameter: a map for an attacker. With auth on (API
tokens or users), both need a signed-in caller (bearer token or page session) unless
`MEDLENS_OPEN_API_DOCS=1` opens them; without auth (loopback only) they stay open.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from medlens.server.security import authenticate

router = APIRouter(include_in_schema=False)


def require_docs_access(request: Request) -> None:
    """Dependency (sync: FastAPI runs it in a thread, it reads users from the store)."""
    from medlens.server import accounts

    state: Any = request.app.state.medlens
    if state.settings.open_api_docs or not accounts.auth_enabled(state):
        return
    authenticate(request)  # raises 401/403 for a caller who is not signed in


@router.get("/openapi.json", dependencies=[Depends(require_docs_access)])
async def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())

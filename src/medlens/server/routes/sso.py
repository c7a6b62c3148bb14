"""Single sign-on routes (OpenID Connect), present only when MEDLENS_OIDC_ISSUER is set.

GET /auth/oidc/login sends the browser to the provider; GET /auth/oidc/callback comes
back with a code and ends in a normal MedLens session (the page's /logout ends it).
Failures render a page saying what went wrong and are audited as denied logins.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from medlens.server import oidc
from medlens.server.deps import audit, get_state
from medlens.server.routes.page import _render, _session, _set_cookie
from medlens.server.state import ServerState

router = APIRouter(include_in_schema=False)
_FLOW_PATH = "/auth/oidc"


def _error_page(request: Request, state: ServerState, exc: oidc.SsoError) -> Response:
    session, cookie = _session(request, state)
    page = _render(
        "sso_error.html", request, state, session, status=exc.status, message=exc.message
    )
    page.delete_cookie(oidc.FLOW_COOKIE, path=_FLOW_PATH)
    return _set_cookie(page, cookie)


def _secure(state: ServerState, request: Request) -> bool:
    base = state.settings.oidc_redirect_base or str(request.base_url)
    return base.startswith("https://")


@router.get(oidc.LOGIN_PATH)
async def oidc_login(request: Request, state: ServerState = Depends(get_state)) -> Response:
    if not oidc.enabled(state.settings):
        return RedirectResponse("/login", status_code=303)
    client = request.client.host if request.client else "unknown"
    state.limiter.check(f"login:{client}")
    try:
        url, flow_cookie = await oidc.start(state, request)
    except oidc.SsoError as exc:
        return await _refused(request, state, client, exc)
    response = RedirectResponse(url, status_code=303)
    # Lax, not Strict: it must come back with the provider's cross-site redirect.
    response.set_cookie(
        oidc.FLOW_COOKIE,
        flow_cookie,
        max_age=oidc.FLOW_TTL_S,
        httponly=True,
        samesite="lax",
        secure=_secure(state, request),
        path=_FLOW_PATH,
    )
    return response


async def _refused(
    request: Request, state: ServerState, client: str, exc: oidc.SsoError
) -> Response:
    """Audit a refused sign-in (with its reason) and show the error page."""
    await run_in_threadpool(
        audit,
        state,
        f"page:{client}",
        "login",
        outcome="denied",
        detail={"via": "oidc", "reason": exc.reason},
    )
    return _error_page(request, state, exc)


@router.get(oidc.CALLBACK_PATH)
async def oidc_callback(request: Request, state: ServerState = Depends(get_state)) -> Response:
    if not oidc.enabled(state.settings):
        return RedirectResponse("/login", status_code=303)
    client = request.client.host if request.client else "unknown"
    flow = oidc.read_flow(state, request.cookies.get(oidc.FLOW_COOKIE))
    try:
        claims = await oidc.finish(state, request, flow)
        actor, fields = await run_in_threadpool(oidc.sign_in, state, claims)
    except oidc.SsoError as exc:
        return await _refused(request, state, client, exc)
    await run_in_threadpool(audit, state, actor, "login", detail={"via": "oidc"})
    cookie, sid = state.sessions.issue(actor.name, fields)
    session = {"sid": sid, "actor": actor.name, "_auth_on": True}
    page = _render("sso_done.html", request, state, session, user_name=actor.name)
    # Continue with a same-site navigation: after the provider's cross-site redirect a
    # plain 303 to "/" would arrive without the (SameSite=Strict) session cookie.
    page.headers["refresh"] = "0; url=/"
    page.delete_cookie(oidc.FLOW_COOKIE, path=_FLOW_PATH)
    return _set_cookie(page, cookie)

"""The web page: server-rendered Jinja2 (autoescaped), plus one static JS file.

Sessions: every visitor gets a signed cookie carrying a session id (for CSRF). With API
tokens configured, the page requires logging in with a token first.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

import medlens
from medlens.disclaimer import DEMO_BANNER, DISCLAIMER
from medlens.errors import NotFound
from medlens.server import accounts, charts
from medlens.server.deps import audit, get_state
from medlens.server.routes.apidocs import require_docs_access
from medlens.server.security import SESSION_COOKIE, SESSION_TTL_S, Actor
from medlens.server.services import access, review, studies, study_view
from medlens.server.services.modelstatus import model_status
from medlens.server.state import ServerState

router = APIRouter(include_in_schema=False)
_env = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parents[1] / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.globals["linked_text"] = study_view.linked_text  # report sentences ↔ boxes
LANGUAGES = [
    ("en", "English"),
    ("fr", "Français"),
    ("de", "Deutsch"),
    ("es", "Español"),
    ("it", "Italiano"),
    ("pt", "Português"),
    ("nl", "Nederlands"),
    ("zh", "中文"),
    ("ja", "日本語"),
    ("ar", "العربية"),
    ("hi", "हिन्दी"),
]


def _session(request: Request, state: ServerState) -> tuple[dict[str, Any], str | None]:
    """(session, new cookie value or None when the current cookie is fine)."""
    data = state.sessions.read(request.cookies.get(SESSION_COOKIE))
    if data is not None:
        return data, None
    cookie, sid = state.sessions.issue(None)
    return {"sid": sid, "actor": None}, cookie


def _set_cookie(response: Response, cookie: str | None) -> Response:
    if cookie is not None:
        response.set_cookie(
            SESSION_COOKIE,
            cookie,
            max_age=SESSION_TTL_S,
            httponly=True,
            samesite="strict",
            path="/",
        )
    return response


def _render(
    name: str,
    request: Request,
    state: ServerState,
    session: dict[str, Any],
    status: int = 200,
    **ctx: Any,
) -> HTMLResponse:
    settings = state.settings
    html = _env.get_template(name).render(
        disclaimer=DISCLAIMER,
        demo_banner=DEMO_BANNER if settings.demo else None,
        version=medlens.__version__,
        csrf=state.sessions.csrf_token(session["sid"]),
        logged_in=bool(session.get("actor")),
        tokens=session.get("_auth_on", bool(settings.api_tokens)),
        sso_name=settings.oidc_provider_name if settings.oidc_issuer else None,
        **ctx,
    )
    return HTMLResponse(html, status_code=status)


async def _page_actor(session: dict[str, Any], state: ServerState) -> Actor | None:
    """The session's actor rebuilt from the store (None: log in first)."""

    def work() -> Actor | None:
        auth_on = accounts.auth_enabled(state)
        session["_auth_on"] = auth_on  # read by _render; never written to the cookie
        return accounts.session_actor(state, session, auth_on)

    return await run_in_threadpool(work)


@router.get("/", response_class=HTMLResponse)
async def index(request: Request, state: ServerState = Depends(get_state)) -> Response:
    session, cookie = _session(request, state)
    actor = await _page_actor(session, state)
    if actor is None:
        return _set_cookie(RedirectResponse("/login", status_code=303), cookie)

    def work() -> list[Any]:
        rows = []
        for study in access.list_visible(state, actor, limit=100):
            interp = state.store.get_interpretation(study.id)
            urgency = interp.urgency if interp is not None else None
            rows.append(
                {
                    "study": studies.study_out(state, study),
                    "urgency": urgency.level if urgency is not None else None,
                    "refused": interp is not None and interp.status == "refused",
                }
            )
        return rows

    history = await run_in_threadpool(work)
    models = model_status(state.settings)
    page = _render(
        "index.html",
        request,
        state,
        session,
        history=history,
        models=models,
        languages=LANGUAGES,
        default_language=state.settings.language,
        max_mb=state.settings.max_upload_mb,
        max_files=studies.MAX_FILES,
    )
    return _set_cookie(page, cookie)


@router.get("/studies/{study_id}", response_class=HTMLResponse)
async def study_page(
    study_id: str, request: Request, state: ServerState = Depends(get_state)
) -> Response:
    session, cookie = _session(request, state)
    actor = await _page_actor(session, state)
    if actor is None:
        return _set_cookie(RedirectResponse("/login", status_code=303), cookie)

    def work() -> dict[str, Any] | None:
        try:
            study = studies.get_study(state, study_id, actor)
        except NotFound:
            return None
        audit(state, actor, "view", study_id=study.id, detail={"via": "page"})
        interp = state.store.get_interpretation(study.id)
        job = studies.latest_job(state, study.id, "interpret")
        followup = studies.latest_job(state, study.id, "followup")
        return {
            "study": studies.study_out(state, study),
            "interp": interp,
            "job": job,
            "followup": followup if followup and followup.status in ("queued", "running") else None,
            "messages": state.store.list_messages(study.id),
            "charts": charts.score_charts(interp) if interp is not None else [],
            "review": review.page_context(state, actor, study, interp),
            "view": study_view.build(state, actor, study, interp),
        }

    data = await run_in_threadpool(work)
    if data is None:
        page = _render("notfound.html", request, state, session, status=404)
    else:
        page = _render(
            "study.html", request, state, session, models=model_status(state.settings), **data
        )
    return _set_cookie(page, cookie)


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, state: ServerState = Depends(get_state)) -> Response:
    session, cookie = _session(request, state)
    return _set_cookie(_render("login.html", request, state, session, error=None), cookie)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, state: ServerState = Depends(get_state)) -> Response:
    session, cookie = _session(request, state)
    client = request.client.host if request.client else "unknown"
    state.limiter.check(f"login:{client}")
    async with request.form(max_files=0, max_fields=6, max_part_size=4096) as form:
        token = str(form.get("token") or "")
        name = str(form.get("name") or "")
        password = str(form.get("password") or "")
        csrf = str(form.get("csrf") or "")
    if cookie is not None or not hmac.compare_digest(
        csrf, state.sessions.csrf_token(session["sid"])
    ):
        return _set_cookie(
            _render(
                "login.html",
                request,
                state,
                session,
                status=403,
                error="Your session expired; please try again.",
            ),
            cookie,
        )
    found = await run_in_threadpool(
        accounts.login, state, name=name, password=password, token=token
    )
    if found is None:
        await run_in_threadpool(audit, state, f"page:{client}", "login", outcome="denied")
        error = "Wrong name or password." if name or password else "That token is not valid."
        return _render("login.html", request, state, session, status=403, error=error)
    actor, fields = found
    await run_in_threadpool(audit, state, actor, "login")
    new_cookie, _sid = state.sessions.issue(actor.name, fields)
    return _set_cookie(RedirectResponse("/", status_code=303), new_cookie)


@router.post("/logout")
async def logout(request: Request, state: ServerState = Depends(get_state)) -> Response:
    session, _cookie = _session(request, state)
    async with request.form(max_files=0, max_fields=2, max_part_size=1024) as form:
        csrf = str(form.get("csrf") or "")
    auth_on = await run_in_threadpool(accounts.auth_enabled, state)
    response = RedirectResponse("/login" if auth_on else "/", status_code=303)
    if hmac.compare_digest(csrf, state.sessions.csrf_token(session["sid"])):
        response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/docs", response_class=HTMLResponse, dependencies=[Depends(require_docs_access)])
async def api_docs(request: Request, state: ServerState = Depends(get_state)) -> Response:
    """The API reference, rendered from the OpenAPI schema (no CDN, no inline script)."""
    session, cookie = _session(request, state)
    schema = request.app.openapi()
    endpoints = []
    for path, ops in schema.get("paths", {}).items():
        for method, op in ops.items():
            params = [
                (p["name"], p.get("in", ""), p.get("required", False), (p.get("description") or ""))
                for p in op.get("parameters", [])
            ]
            content = (op.get("requestBody") or {}).get("content", {})
            endpoints.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "summary": op.get("summary", ""),
                    "description": op.get("description", ""),
                    "params": params,
                    "body": ", ".join(content),
                    "responses": sorted(op.get("responses", {})),
                    "tag": (op.get("tags") or [""])[0],
                }
            )
    page = _render(
        "apidocs.html",
        request,
        state,
        session,
        endpoints=endpoints,
        title=schema["info"]["title"],
        api_version=schema["info"]["version"],
    )
    return _set_cookie(page, cookie)

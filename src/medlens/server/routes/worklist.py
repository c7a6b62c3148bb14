"""The reading worklist page (`/worklist`): unsigned studies the caller can see, most
urgent first, then the oldest. Server-rendered like the rest of the page (page.py)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from medlens.server.deps import get_state
from medlens.server.routes import page
from medlens.server.security import Actor
from medlens.server.services import access, review
from medlens.server.state import ServerState
from medlens.store.base import Study

router = APIRouter(include_in_schema=False)
WORKLIST_SCAN = 500  # the newest studies looked at; a reading list, not an archive


def visible_studies(state: ServerState, actor: Actor) -> list[Study]:
    """The newest studies the caller may see (ownership, groups; admins see all)."""
    return access.list_visible(state, actor, limit=WORKLIST_SCAN)


@router.get("/worklist", response_class=HTMLResponse)
async def worklist_page(request: Request, state: ServerState = Depends(get_state)) -> Response:
    session, cookie = page._session(request, state)
    actor = await page._page_actor(session, state)
    if actor is None:
        return page._set_cookie(RedirectResponse("/login", status_code=303), cookie)

    def work() -> list[review.WorklistRow]:
        return review.worklist(state, visible_studies(state, actor))

    rows = await run_in_threadpool(work)
    html = page._render(
        "worklist.html", request, state, session, rows=rows, can_review=review.can_review(actor)
    )
    return page._set_cookie(html, cookie)

"""Radiologist review API: report state, versions, sign-off, addenda, diff, PDF.

Everyone who can see a study reads its review; only a radiologist writes (403). A study
the caller may not see is 404, exactly like one that does not exist. Every write is
audited, refused ones too. The worklist page lives in routes/worklist.py.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from starlette.concurrency import run_in_threadpool

from medlens.errors import MedLensError
from medlens.server.deps import api_actor, audit, get_state
from medlens.server.routes import worklist
from medlens.server.schemas_review import (
    AddendumIn,
    AddendumOut,
    DiffOut,
    ReportIn,
    ReportVersionOut,
    ReviewOut,
    SignatureOut,
    SignIn,
)
from medlens.server.security import Actor
from medlens.server.services import access, review
from medlens.server.services.report_pdf import report_pdf
from medlens.server.state import ServerState
from medlens.shapes import from_attributes
from medlens.store.base import Study

router = APIRouter(tags=["review"])
router.include_router(worklist.router)
ActorDep = Annotated[Actor, Depends(api_actor)]
StateDep = Annotated[ServerState, Depends(get_state)]
_BASE = "/v1/studies/{study_id}/report"
_WRITE_ERRORS: dict[int | str, dict[str, Any]] = {403: {}, 404: {}, 409: {}}


def visible_study(state: ServerState, actor: Actor, study_id: str) -> Study:
    """The study if the caller may see it (ownership, groups), else 404."""
    return access.visible_study(state, study_id, actor)


def _write(
    state: ServerState, actor: Actor, study_id: str, action: str, fn: Any
) -> tuple[Study, Any]:
    """Run a write on a visible study; audit its outcome (refusals included)."""
    study = visible_study(state, actor, study_id)
    try:
        result = fn(study)
    except MedLensError as err:
        outcome = "denied" if err.http_status == 403 else "refused"
        audit(state, actor, action, study_id=study.id, outcome=outcome, detail={"code": err.code})
        raise
    detail = {k: getattr(result, k) for k in ("version", "seq", "sha256") if hasattr(result, k)}
    audit(state, actor, action, study_id=study.id, detail=detail)
    return study, result


@router.get(_BASE, response_model=ReviewOut, responses={404: {}, 409: {}})
async def get_report(study_id: str, actor: ActorDep, state: StateDep) -> ReviewOut:
    """The review state: the AI draft (read-only), versions, signature, addenda."""

    def work() -> ReviewOut:
        study = visible_study(state, actor, study_id)
        audit(state, actor, "view", study_id=study.id, detail={"what": "report"})
        return review.review_out(state, study, actor)

    return await run_in_threadpool(work)


@router.put(_BASE, response_model=ReportVersionOut, status_code=201, responses=_WRITE_ERRORS)
async def save_report(
    study_id: str, body: ReportIn, actor: ActorDep, state: StateDep
) -> ReportVersionOut:
    """Save a new version of the report (radiologists; never overwrites). `base_version`
    guards against saving over someone else's newer version (409)."""

    def work() -> ReportVersionOut:
        _study, version = _write(
            state,
            actor,
            study_id,
            "report_save",
            lambda s: review.save_version(state, s, actor, body),
        )
        return from_attributes(ReportVersionOut, version)

    return await run_in_threadpool(work)


@router.post(f"{_BASE}/sign", response_model=SignatureOut, status_code=201,
             responses=_WRITE_ERRORS)  # fmt: skip
async def sign_report(
    study_id: str, actor: ActorDep, state: StateDep, body: SignIn | None = None
) -> SignatureOut:
    """Sign the latest version: freezes it with signer, time and a SHA-256 of the signed
    content. 409 when already signed, nothing is saved, or `version` is not the latest."""
    version = body.version if body is not None else None

    def work() -> SignatureOut:
        _study, sig = _write(
            state, actor, study_id, "report_sign", lambda s: review.sign(state, s, actor, version)
        )
        return from_attributes(SignatureOut, sig)

    return await run_in_threadpool(work)


@router.post(f"{_BASE}/addenda", response_model=AddendumOut, status_code=201,
             responses=_WRITE_ERRORS)  # fmt: skip
async def add_addendum(
    study_id: str, body: AddendumIn, actor: ActorDep, state: StateDep
) -> AddendumOut:
    """Add an addendum to a signed report (the signed text itself never changes)."""

    def work() -> AddendumOut:
        _study, added = _write(
            state,
            actor,
            study_id,
            "report_addendum",
            lambda s: review.add_addendum(state, s, actor, body.text),
        )
        return from_attributes(AddendumOut, added)

    return await run_in_threadpool(work)


@router.get(f"{_BASE}/diff", response_model=DiffOut, responses={404: {}, 409: {}})
async def report_diff(study_id: str, actor: ActorDep, state: StateDep) -> DiffOut:
    """AI draft vs the latest (or signed) version: word-level per section, and unified."""

    def work() -> DiffOut:
        return review.diff_out(state, visible_study(state, actor, study_id))

    return await run_in_threadpool(work)


@router.get(
    "/v1/studies/{study_id}/report.pdf",
    responses={200: {"content": {"application/pdf": {}}}, 404: {}, 409: {}},
)
async def report_pdf_export(study_id: str, actor: ActorDep, state: StateDep) -> Response:
    """The report as PDF: the signed text (or the draft marked DRAFT — NOT SIGNED),
    signer and time, addenda, and the disclaimer on every page."""

    def work() -> bytes:
        study = visible_study(state, actor, study_id)
        interp = review.reviewable(state, study)
        signed = review.signed_report(state, study.id)
        audit(state, actor, "export", study_id=study.id,
              detail={"format": "pdf", "signed": signed is not None})  # fmt: skip
        return report_pdf(study.id, study.created_at, review.draft_content(interp), signed)

    pdf = await run_in_threadpool(work)
    name = f"medlens-{study_id[:8]}.pdf"
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )

"""The native HTTP API (/v1/studies, /v1/jobs). Thin: logic lives in services/."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.formparsers import MultiPartException, MultiPartParser

from medlens.errors import MedLensError, NotFound
from medlens.server.deps import api_actor, audit, get_state
from medlens.server.schemas import (
    FollowupAccepted,
    JobOut,
    MessageIn,
    MessageOut,
    StudyCreated,
    StudyList,
    StudyOut,
)
from medlens.server.security import Actor
from medlens.server.services import access, image_roles, render, review, studies
from medlens.server.services.prior_fields import FIELD_LIMITS as PRIOR_FIELDS
from medlens.server.services.prior_fields import clean_prior_fields
from medlens.server.sse import job_events
from medlens.server.state import ServerState
from medlens.tasks.interpret.fhir import to_diagnostic_report

router = APIRouter(prefix="/v1", tags=["studies"])
ActorDep = Annotated[Actor, Depends(api_actor)]
StateDep = Annotated[ServerState, Depends(get_state)]

MAX_FIELD_BYTES = 16 * 1024
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "PNG, JPEG or DICOM; one or more parts named 'files'.",
                        },
                        "indication": {"type": "string", "maxLength": 1000},
                        "age": {"type": "string", "maxLength": 16},
                        "sex": {"type": "string", "maxLength": 16},
                        "language": {
                            "type": "string",
                            "description": "Report language, e.g. en, fr",
                        },
                        "group": {
                            "type": "string",
                            "description": "Share with this group of yours (default: your "
                            "first group)",
                        },
                        "view": {
                            "type": "array",
                            "items": {"type": "string", "enum": list(image_roles.VIEW_CHOICES)},
                            "description": "Each file's view, one per file in file order "
                            "(default auto: DICOM ViewPosition, else not stated).",
                        },
                    },
                }
            }
        },
    }
}


class _InMemoryMultiPartParser(MultiPartParser):
    """Keeps uploaded files in memory (bounded by the request cap) so an original,
    not yet de-identified upload never touches the disk, not even as a temp file."""


async def _read_form(request: Request, max_bytes: int) -> FormData:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise studies.BadRequest("Send the images as multipart/form-data (parts named 'files').")
    parser = _InMemoryMultiPartParser(
        request.headers,
        request.stream(),
        max_files=studies.MAX_FILES,
        max_fields=12 + studies.MAX_FILES,  # one `view` per file besides the context
        max_part_size=MAX_FIELD_BYTES,
    )
    parser.spool_max_size = max_bytes + 1
    try:
        return await parser.parse()
    except MultiPartException as exc:
        raise studies.BadRequest(f"Malformed upload: {exc.message}") from exc


@router.post(
    "/studies",
    response_model=StudyCreated,
    status_code=201,
    openapi_extra=_UPLOAD_BODY,
    responses={
        200: {"description": "Same upload or Idempotency-Key: existing study"},
        400: {},
        401: {},
        403: {},
        413: {},
        415: {},
        422: {},
        429: {},
    },
)
async def create_study(
    request: Request,
    actor: ActorDep,
    state: StateDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:
    """Upload one or more images (parts named `files`) with optional clinical context;
    starts an interpretation job. The same images or Idempotency-Key return the same study."""
    form = await _read_form(request, state.settings.max_upload_mb * 1024 * 1024)
    try:
        files: list[tuple[str | None, bytes]] = []
        views: list[Any] = []
        for key, value in form.multi_items():
            if key == "files" and not isinstance(value, str):
                files.append((value.filename, await value.read()))
            elif key == image_roles.FIELD:
                views.append(value)
            elif key not in ("files", "group", *studies._CONTEXT_LIMITS, *PRIOR_FIELDS):
                raise studies.BadRequest(f"Unknown form field {key!r}.")
        raw_context = {
            k: form.get(k) for k in studies._CONTEXT_LIMITS if isinstance(form.get(k), str)
        }
        raw_prior = {k: form.get(k) for k in PRIOR_FIELDS}
        group_field = form.get("group")
        group = group_field if isinstance(group_field, str) else None
    finally:
        await form.close()
    try:
        context = studies.clean_context(raw_context, state.settings.language)
        context |= image_roles.clean_views(views, len(files))
        context |= await run_in_threadpool(
            clean_prior_fields, state, raw_prior, actor, studies.BadRequest
        )
        study, created, _job = await run_in_threadpool(
            studies.upload,
            state,
            files,
            context,
            idempotency_key=idempotency_key,
            actor=actor,
            group=group,
        )
    except MedLensError as err:
        state.metrics.uploads.labels(outcome="refused").inc()
        await run_in_threadpool(
            audit,
            state,
            actor,
            "upload",
            outcome="refused",
            detail={"code": err.code, "files": len(files)},
        )
        raise
    state.metrics.uploads.labels(outcome="created" if created else "existing").inc()
    await run_in_threadpool(
        audit,
        state,
        actor,
        "upload",
        study_id=study.id,
        detail={"created": created, "files": len(files)},
    )
    out = await run_in_threadpool(studies.study_out, state, study, actor=actor)
    body = StudyCreated(**out.model_dump(), created=created).model_dump(mode="json")
    return JSONResponse(
        body, status_code=201 if created else 200, headers={"Location": f"/v1/studies/{study.id}"}
    )


@router.get("/studies", response_model=StudyList)
async def list_studies(
    actor: ActorDep,
    state: StateDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> StudyList:
    def work() -> StudyList:
        rows = access.list_visible(state, actor, limit=limit, offset=offset)
        return StudyList(studies=[studies.study_out(state, s) for s in rows])

    return await run_in_threadpool(work)


@router.get("/studies/{study_id}", response_model=StudyOut)
async def get_study(study_id: str, actor: ActorDep, state: StateDep) -> StudyOut:
    def work() -> StudyOut:
        study = studies.get_study(state, study_id, actor)
        audit(state, actor, "view", study_id=study.id)
        return studies.study_out(state, study, actor=actor)

    return await run_in_threadpool(work)


@router.delete("/studies/{study_id}", status_code=204)
async def delete_study(study_id: str, actor: ActorDep, state: StateDep) -> Response:
    def work() -> None:
        try:
            studies.delete_study(state, study_id, actor)
        except NotFound:
            audit(state, actor, "delete", study_id=study_id, outcome="not_found")
            raise
        audit(state, actor, "delete", study_id=study_id)

    await run_in_threadpool(work)
    return Response(status_code=204)


@router.get(
    "/studies/{study_id}/interpretation",
    responses={
        200: {
            "content": {"application/json": {}, "application/fhir+json": {}},
            "description": "Interpretation JSON, or FHIR R4 DiagnosticReport "
            "with Accept: application/fhir+json",
        },
        404: {},
        409: {},
    },
)
async def get_interpretation(
    study_id: str,
    request: Request,
    actor: ActorDep,
    state: StateDep,
    format: Annotated[
        str | None, Query(pattern="^(json|fhir)$", description="Alternative to the Accept header")
    ] = None,
) -> Response:
    fhir = format == "fhir" or (
        format is None and "application/fhir+json" in request.headers.get("accept", "")
    )

    def work() -> dict[str, Any]:
        study = studies.get_study(state, study_id, actor)
        interp = state.store.get_interpretation(study.id)
        if interp is None:
            job = studies.latest_job(state, study.id, "interpret")
            audit(
                state, actor, "export" if fhir else "view", study_id=study.id, outcome="not_ready"
            )
            raise NotReady(_not_ready_message(job))
        audit(
            state,
            actor,
            "export" if fhir else "view",
            study_id=study.id,
            detail={"format": "fhir" if fhir else "json"},
        )
        if fhir:
            signed = review.signed_report(state, study.id)  # final/appended once signed
            return to_diagnostic_report(interp, study_created=study.created_at, signed=signed)
        return interp.model_dump(mode="json")

    body = await run_in_threadpool(work)
    return JSONResponse(body, media_type="application/fhir+json" if fhir else None)


class NotReady(MedLensError):
    http_status = 409
    code = "not_ready"


def _not_ready_message(job: Any) -> str:
    if job is None:
        return "No interpretation for this study."
    if job.status == "failed":
        return f"The interpretation failed: {job.error}"
    return f"The interpretation is not ready yet ({job.status}, {job.progress:.0%})."


@router.get(
    "/studies/{study_id}/images/{position}.png", responses={200: {"content": {"image/png": {}}}}
)
async def get_image(
    study_id: str,
    position: int,
    actor: ActorDep,
    state: StateDep,
    wc: Annotated[float | None, Query(description="DICOM window centre")] = None,
    ww: Annotated[float | None, Query(gt=0, description="DICOM window width")] = None,
) -> Response:
    """The de-identified image rendered to PNG (window/level applies to DICOM)."""

    def work() -> bytes:
        study = studies.get_study(state, study_id, actor)
        image = next((i for i in study.images if i.position == position), None)
        if image is None:
            raise NotFound(f"Study {study_id} has no image {position}.")
        png = render.render_png(state.store.blobs, image, center=wc, width=ww)
        # Seeing the pixels is seeing the study: audited like a view (the probe found not).
        detail = {"position": position, "window": [wc, ww] if wc or ww else None}
        audit(state, actor, "view_image", study_id=study.id, detail=detail)
        return png

    png = await run_in_threadpool(work)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})


@router.get("/studies/{study_id}/images/{position}/window")
async def get_window(study_id: str, position: int, actor: ActorDep, state: StateDep) -> Any:
    """Value range and default window: a greyscale DICOM's stored values, 0..255 for a
    PNG/JPEG (its window stretches the 8-bit values), null for a colour DICOM."""

    def work() -> Any:
        study = studies.get_study(state, study_id, actor)
        image = next((i for i in study.images if i.position == position), None)
        if image is None:
            raise NotFound(f"Study {study_id} has no image {position}.")
        found = render.window_defaults(state.store.blobs, image)
        detail = {"position": position, "what": "window"}
        audit(state, actor, "view_image", study_id=study.id, detail=detail)
        return found

    return await run_in_threadpool(work)


@router.get("/studies/{study_id}/messages", response_model=list[MessageOut])
async def list_messages(study_id: str, actor: ActorDep, state: StateDep) -> list[MessageOut]:
    def work() -> list[MessageOut]:
        study = studies.get_study(state, study_id, actor)
        return [studies.message_out(m) for m in state.store.list_messages(study.id)]

    return await run_in_threadpool(work)


@router.post("/studies/{study_id}/messages", response_model=FollowupAccepted, status_code=202)
async def post_message(
    study_id: str, body: MessageIn, actor: ActorDep, state: StateDep
) -> FollowupAccepted:
    """Ask a follow-up question about the study; the answer streams on the job's events."""

    def work() -> FollowupAccepted:
        try:
            msg, job = studies.ask_followup(state, study_id, body.content, body.language, actor)
        except MedLensError as err:
            audit(
                state,
                actor,
                "followup",
                study_id=study_id,
                outcome="refused",
                detail={"code": err.code},
            )
            raise
        audit(state, actor, "followup", study_id=study_id, detail={"job": job.id})
        return FollowupAccepted(message=studies.message_out(msg), job=studies.job_out(job))

    return await run_in_threadpool(work)


@router.get("/jobs/{job_id}", response_model=JobOut, tags=["jobs"])
async def get_job(job_id: str, actor: ActorDep, state: StateDep) -> JobOut:
    job = await run_in_threadpool(access.visible_job, state, job_id, actor)
    return studies.job_out(job, state.settings)


@router.get(
    "/jobs/{job_id}/events",
    tags=["jobs"],
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "SSE: progress, token, done | failed",
        }
    },
)
async def job_events_stream(
    job_id: str, request: Request, actor: ActorDep, state: StateDep
) -> StreamingResponse:
    """Server-sent events for a job: `progress` {status, progress, stage}, `token` {text}
    (report/answer text as it is generated), then `done` or `failed`."""
    await run_in_threadpool(access.visible_job, state, job_id, actor)  # 404 unless visible
    stream = job_events(state, job_id, request.is_disconnected)
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )

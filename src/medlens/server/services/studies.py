"""Studies: upload, list, show, delete, follow-up. Synchronous (called in a threadpool)."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from medlens.errors import InvalidImage, MedLensError, NotFound
from medlens.jobs import estimates, intake
from medlens.server.schemas import ImageOut, JobOut, MessageOut, StudyOut
from medlens.server.security import Actor
from medlens.server.services import access, image_roles
from medlens.server.state import ServerState
from medlens.shapes import from_attributes
from medlens.store.base import Job, Message, Study

MAX_FILES = 16
MAX_QUEUED_JOBS = 200  # beyond this, new work is refused (429) so the queue stays bounded
_CONTEXT_LIMITS = {"indication": 1000, "age": 16, "sex": 16, "language": 16}
_LANG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?$")


class BadRequest(MedLensError):
    http_status = 400
    code = "bad_request"


class QueueFull(MedLensError):
    http_status = 429
    code = "queue_full"


def check_queue(state: ServerState) -> None:
    counter = getattr(state.store, "count_jobs", None)
    queued = (
        counter()["queued"]
        if counter
        else len(state.store.list_jobs(status="queued", limit=MAX_QUEUED_JOBS + 1))
    )
    if queued >= MAX_QUEUED_JOBS:
        raise QueueFull(f"{queued} jobs are waiting; try again in a few minutes.")


def clean_context(raw: dict[str, Any], default_language: str) -> dict[str, Any]:
    """The optional clinical context, trimmed and length-checked (all untrusted text)."""
    context: dict[str, Any] = {}
    for key, limit in _CONTEXT_LIMITS.items():
        value = raw.get(key)
        if value is None:
            continue
        text = str(value).strip()
        if not text:
            continue
        if len(text) > limit:
            raise BadRequest(f"'{key}' is too long (at most {limit} characters).")
        context[key] = text
    lang = context.get("language", default_language)
    if not _LANG.match(lang):
        raise BadRequest(f"'language' must be a language code such as 'en' or 'fr', not {lang!r}.")
    context["language"] = lang.lower()
    return context


def upload(
    state: ServerState,
    files: list[tuple[str | None, bytes]],
    context: dict[str, Any],
    *,
    idempotency_key: str | None,
    actor: Actor,
    group: str | None = None,
) -> tuple[Study, bool, Job | None]:
    if not files:
        raise BadRequest("No image: send one or more files in parts named 'files'.")
    if state.runner is not None:  # this process runs the jobs: it needs the weights
        from medlens.errors import ModelNotAvailable
        from medlens.server.services.modelstatus import model_status

        models = model_status(state.settings)
        if not models.ready:
            raise ModelNotAvailable(models.message)
    if len(files) > MAX_FILES:
        raise BadRequest(f"Too many files: at most {MAX_FILES} images per study.")
    prepared = []
    for position, (_name, data) in enumerate(files, start=1):  # the file name is PHI: dropped
        if not data:
            raise InvalidImage(f"{intake.display_name(position)}: the file is empty.")
        prepared.append(intake.prepare(data, position, state.settings))
    # Checked before anything is written, so a refused upload leaves no study without a job.
    check_queue(state)
    owner, owner_id, group = access.upload_owner(actor, group)
    context = access.mark_demo(state, context)  # demo studies stay out of real views
    sub = intake.submit_study(
        state.store, prepared, context, idempotency_key=idempotency_key, owner=owner
    )
    study = sub.study
    if owner_id is not None and study.owner_id is None:
        # Until this runs the new study has no owner: only admins could see it (fails closed).
        state.store.set_study_owner(study.id, owner_id, group)
        study = replace(study, owner_id=owner_id, group=group)
    if sub.queued:
        state.wake_runner()
    return study, sub.created, sub.job


def latest_job(state: ServerState, study_id: str, kind: str | None = None) -> Job | None:
    return intake.latest_job(state.store, study_id, kind)


def get_study(state: ServerState, study_id: str, actor: Actor) -> Study:
    """The study if `actor` may see it; NotFound otherwise (same as a missing one)."""
    return access.visible_study(state, study_id, actor)


def job_out(job: Job, settings: Any = None) -> JobOut:
    """The job as the API shows it; with `settings`, a running stage's time estimate."""
    eta = estimates.progress_fields(settings, job.stage, job.status)
    return from_attributes(JobOut, job, events_url=f"/v1/jobs/{job.id}/events", **eta)


def _images_out(study: Study, timepoint: str, date: str | None) -> list[ImageOut]:
    by_position = {img.position: img for img in study.images}
    return [
        from_attributes(
            ImageOut,
            by_position[role.position],
            url=f"/v1/studies/{study.id}/images/{role.position}.png",
            view=role.view,
            timepoint=role.timepoint,
            date=role.date,
            study_id=study.id,
        )
        for role in image_roles.study_roles(study, timepoint, date)
    ]


def study_out(
    state: ServerState, study: Study, *, with_job: bool = True, actor: Actor | None = None
) -> StudyOut:
    """The study as the API shows it; with `actor`, also its prior's images (if visible)."""
    job = latest_job(state, study.id) if with_job else None
    images = _images_out(study, "current", image_roles.current_date(study))
    prior_images: list[ImageOut] = []
    if actor is not None:
        prior, prior_date = image_roles.prior_study(state, study, actor)
        if prior is not None:
            prior_images = _images_out(prior, "prior", prior_date)
    return StudyOut(
        id=study.id,
        created_at=study.created_at,
        context=study.context,
        images=images,
        prior_images=prior_images,
        job=job_out(job, state.settings) if job else None,
        interpretation_url=f"/v1/studies/{study.id}/interpretation",
        has_interpretation=state.store.get_interpretation(study.id) is not None,
    )


def message_out(msg: Message) -> MessageOut:
    return from_attributes(MessageOut, msg)


def ask_followup(
    state: ServerState, study_id: str, question: str, language: str | None, actor: Actor
) -> tuple[Message, Job]:
    study = get_study(state, study_id, actor)
    interp = state.store.get_interpretation(study.id)
    if interp is None:
        raise BadRequest("The report is not ready yet; ask again when it has finished.")
    if interp.status == "refused":
        raise BadRequest(
            "This study has no report (its images were refused), so there is nothing to ask about."
        )
    check_queue(state)
    message = state.store.add_message(study.id, "user", question)
    job = state.store.enqueue_job(
        "followup", {"question_seq": message.seq, "language": language}, study_id=study.id
    )
    state.wake_runner()
    return message, job


def delete_study(state: ServerState, study_id: str, actor: Actor) -> None:
    study = get_study(state, study_id, actor)
    if not state.store.delete_study(study.id):
        raise NotFound(f"No study {study_id!r}.")
    for img in study.images:  # its decoded pixels leave memory too
        intake.DECODED.discard(img.sha256)

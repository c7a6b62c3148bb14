"""The prior of an uploaded study, rebuilt for the interpret job from the fields stored
with its context (server/services/prior_fields.py): the images of `prior_study_id` as
prior images, that study's report (or `prior_report`) as the prior report, `prior_date`,
and whether to ground (`ground`). Each study's declared views (`views`, one per image in
upload order: "frontal" / "lateral" / "auto") name its images' roles, prior's included."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

VIEWS_KEY = "views"  # the context key of the declared views (server/services/image_roles.py)


def declared_views(context: dict[str, Any] | None) -> list[str]:
    """The views declared at upload, one per stored image position ("auto": none declared)."""
    views = (context or {}).get(VIEWS_KEY)
    return [str(v) for v in views] if isinstance(views, list) else []


def declared_at(views: list[str], position: int) -> str:
    return views[position] if 0 <= position < len(views) else "auto"


def with_task_prior(store: Any, study: Any) -> tuple[Any, bool]:
    """(task Study with its prior attached, ground?) from the stored context."""
    from medlens.jobs.intake import task_image
    from medlens.tasks.interpret.study import StudyImage, StudyPrior, declared_view

    stored = store.get_study(study.study_id)
    ctx = stored.context if stored is not None else {}
    ground = bool(ctx.get("ground"))
    prior_id, report = ctx.get("prior_study_id"), ctx.get("prior_report")
    images = list(study.images)
    if prior_id:
        prior = store.get_study(prior_id)
        if prior is not None:
            views = declared_views(prior.context)
            for img in prior.images:
                ingested = task_image(store.blobs, img)
                view = declared_view(declared_at(views, img.position), ingested)
                images.append(StudyImage(ingested, view=view, timepoint="prior"))
            interp = store.get_interpretation(prior_id)
            if not report and interp is not None and interp.report is not None:
                rep = interp.report
                report = " ".join(t for t in (rep.findings, rep.impression) if t) or rep.raw_text
    info = StudyPrior(report=report or None, date=ctx.get("prior_date"), study_id=prior_id)
    if info.is_empty() and len(images) == len(study.images):
        return study, ground
    return replace(study, images=tuple(images), prior=info), ground

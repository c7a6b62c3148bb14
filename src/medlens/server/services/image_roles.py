"""Image roles: which image is frontal or lateral, current or prior (and the prior's date).

The upload may declare one view per file (form field `view`, repeated in file order:
"frontal" | "lateral" | "auto"); they are kept with the study's context under `views`
(jobs/prior.py reads them back for the interpret job). An "auto" image keeps the view its
DICOM ViewPosition gives, or none (PNG/JPEG). The study page and the API show the roles
from here, so both say the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from medlens.errors import MedLensError
from medlens.jobs.prior import VIEWS_KEY, declared_at, declared_views
from medlens.tasks.interpret.study import view_of_position

if TYPE_CHECKING:
    from medlens.server.security import Actor
    from medlens.server.state import ServerState
    from medlens.store.base import StoredImage, Study

VIEW_CHOICES = ("frontal", "lateral", "auto")
FIELD = "view"


class InvalidView(MedLensError, code="invalid_view", http_status=422):
    """A `view` form field that is not one of VIEW_CHOICES, or one too many."""


@dataclass(frozen=True)
class ImageRole:
    """One image's role as the page and the API show it."""

    study_id: str
    position: int
    view: str  # frontal | lateral | unknown
    timepoint: str  # current | prior
    date: str | None
    declared: bool  # the uploader named the view (else read from ViewPosition, or unknown)

    @property
    def text(self) -> str:
        """What the page shows, e.g. "Current · frontal", "Prior · lateral · 2026-11-01"."""
        view = self.view if self.view != "unknown" else "view not stated"
        parts = [self.timepoint.capitalize(), view]
        if self.timepoint == "prior" and self.date:
            parts.append(self.date)
        return " · ".join(parts)


def clean_views(raw: list[Any], files: int) -> dict[str, Any]:
    """The context entry for the declared views ({} when none or all "auto")."""
    if not raw or not files:  # no file: the upload's own "no image" error says it
        return {}
    views = [str(v).strip().lower() if isinstance(v, str) else "" for v in raw]
    for n, view in enumerate(views, start=1):
        if view not in VIEW_CHOICES:
            raise InvalidView(
                f"'view' number {n} is {str(raw[n - 1])[:40]!r}: use frontal, lateral or auto "
                "(one per file, in file order)."
            )
    if len(views) > files:
        raise InvalidView(
            f"{len(views)} 'view' fields for {files} file{'s' if files != 1 else ''}: "
            "send at most one per file, in file order."
        )
    views += ["auto"] * (files - len(views))
    return {VIEWS_KEY: views} if any(v != "auto" for v in views) else {}


def stored_view(image: StoredImage, views: list[str]) -> tuple[str, bool]:
    """(view, declared?) of a stored image: the uploader's, else its ViewPosition's."""
    declared = declared_at(views, image.position)
    if declared in ("frontal", "lateral"):
        return declared, True
    return view_of_position((image.metadata or {}).get("view_position")), False


def study_roles(study: Study, timepoint: str, date: str | None) -> list[ImageRole]:
    views = declared_views(study.context)
    out = []
    for img in study.images:
        view, declared = stored_view(img, views)
        out.append(ImageRole(study.id, img.position, view, timepoint, date, declared))
    return out


def current_date(study: Study) -> str:
    return str((study.context or {}).get("study_date") or study.created_at[:10])


def prior_study(state: ServerState, study: Study, actor: Actor) -> tuple[Study | None, str | None]:
    """The MedLens study named as this one's prior (when `actor` may still see it), and
    the prior's date: the one given at upload, else that study's own date."""
    from medlens.server.services import access

    ctx = study.context or {}
    date = ctx.get("prior_date")
    source = ctx.get("prior_study_id")
    if not isinstance(source, str) or source == study.id:
        return None, date
    try:
        prior = access.visible_study(state, source, actor)
    except MedLensError:  # deleted or no longer shared: nothing about it leaks
        return None, date
    return prior, date or current_date(prior)

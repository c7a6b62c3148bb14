"""A study: one or more ingested images plus optional clinical context.

Images keep a role (frontal / lateral, current / prior) because the prompt names each
image for the model and the gate treats a declared lateral differently from a frontal.
Everything in `StudyContext` is untrusted text: the prompt builder puts it only inside
the delimited data section, never into instructions.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from medlens.imaging.gate import GateDecision
    from medlens.imaging.types import IngestedImage

View = Literal["frontal", "lateral", "unknown"]
Timepoint = Literal["current", "prior"]

_LATERAL_POSITIONS = {"LL", "RL", "LAT", "LATERAL", "LLD", "RLD"}
_FRONTAL_POSITIONS = {"PA", "AP", "AP SUPINE", "PA ERECT"}


@dataclass(frozen=True)
class StudyImage:
    """One image of a study with its role in the study."""

    ingested: IngestedImage
    view: View = "unknown"
    timepoint: Timepoint = "current"
    # Free text such as "2 weeks earlier" for a prior; untrusted, goes to the data section.
    note: str | None = None
    # The model-free gate decision when intake already made it (the job then runs only the
    # encoder half); None: the interpreter's gate stage makes it.
    pixel_gate: GateDecision | None = None

    @property
    def label(self) -> str:
        """How the prompt names this image ("current frontal", "prior lateral" ...)."""
        view = "" if self.view == "unknown" else f" {self.view}"
        return f"{self.timepoint}{view} chest radiograph"


@dataclass(frozen=True)
class StudyContext:
    """Clinical context supplied with a study (all untrusted free text)."""

    indication: str | None = None
    age: str | None = None  # an age or age band ("60-69"), never a birth date
    sex: str | None = None
    ehr_summary: str | None = None  # e.g. from medlens.tasks.ehr.patient_context(...).text
    notes: str | None = None

    def is_empty(self) -> bool:
        return not any((self.indication, self.age, self.sex, self.ehr_summary, self.notes))


@dataclass(frozen=True)
class StudyPrior:
    """What is known about the prior study besides its images (all untrusted text)."""

    report: str | None = None  # the prior report's text
    date: str | None = None  # ISO date or "N days earlier"
    study_id: str | None = None  # the MedLens study the prior came from

    def is_empty(self) -> bool:
        return not any((self.report, self.date, self.study_id))


@dataclass(frozen=True)
class Study:
    images: tuple[StudyImage, ...]
    context: StudyContext = field(default_factory=StudyContext)
    study_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    modality: str = "cxr"  # which prompt family: cxr, dermatology, pathology, fundus, ct
    prior: StudyPrior | None = None  # prior report/date/study id (prior images: timepoint)

    @classmethod
    def from_ingested(
        cls,
        images: list[IngestedImage],
        *,
        priors: list[IngestedImage] | None = None,
        laterals: list[IngestedImage] | None = None,
        context: StudyContext | None = None,
        modality: str = "cxr",
        study_id: str | None = None,
    ) -> Study:
        """Current images first (view guessed from DICOM ViewPosition), then declared
        current laterals, then priors."""
        items = [StudyImage(img, view=guess_view(img), timepoint="current") for img in images]
        items += [StudyImage(img, view="lateral", timepoint="current") for img in laterals or []]
        items += [StudyImage(img, view=guess_view(img), timepoint="prior") for img in priors or []]
        kwargs = {"study_id": study_id} if study_id else {}
        return cls(tuple(items), context or StudyContext(), modality=modality, **kwargs)

    @property
    def current(self) -> list[StudyImage]:
        return [i for i in self.images if i.timepoint == "current"]

    @property
    def priors(self) -> list[StudyImage]:
        return [i for i in self.images if i.timepoint == "prior"]

    def untrusted_descriptions(self) -> list[str]:
        """DICOM free-text descriptions of the images (untrusted)."""
        out = []
        for i, img in enumerate(self.images, 1):
            desc = img.ingested.metadata.description
            if desc:
                out.append(f"image {i}: {desc}")
        return out


def guess_view(img: IngestedImage) -> View:
    """Frontal/lateral from DICOM ViewPosition; PNG/JPEG carry no view, so "unknown"."""
    return view_of_position(img.metadata.view_position)


def declared_view(declared: object, img: IngestedImage) -> View:
    """The view the uploader declared ("frontal"/"lateral"), else the guessed one."""
    if declared == "frontal":
        return "frontal"
    if declared == "lateral":
        return "lateral"
    return guess_view(img)


def view_of_position(view_position: str | None) -> View:
    """Frontal/lateral from a DICOM ViewPosition value ("unknown" when absent or other)."""
    pos = (view_position or "").strip().upper()
    if pos in _LATERAL_POSITIONS:
        return "lateral"
    if pos in _FRONTAL_POSITIONS:
        return "frontal"
    return "unknown"

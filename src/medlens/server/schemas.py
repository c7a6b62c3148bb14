"""Request and response models of the native API (OpenAI shapes: openai_shapes.py)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from medlens.disclaimer import DISCLAIMER


# --- native API ---------------------------------------------------------------------
class ImageOut(BaseModel):
    id: int
    position: int
    format: str
    filename: str
    sha256: str
    url: str = Field(description="De-identified image rendered to PNG.")
    metadata: dict[str, Any] = Field(default_factory=dict)
    view: Literal["frontal", "lateral", "unknown"] = Field(
        "unknown", description="Declared at upload (`view`), else from DICOM ViewPosition."
    )
    timepoint: Literal["current", "prior"] = "current"
    date: str | None = Field(None, description="The study date (a prior's: `prior_date`).")
    study_id: str | None = Field(None, description="The study holding the image.")


class JobOut(BaseModel):
    id: str
    kind: str
    status: str
    progress: float
    stage: str
    study_id: str | None = None
    error: str | None = None
    events_url: str
    eta_s: float | None = None  # a running stage's median duration on this machine
    estimate: str | None = None  # that in words, e.g. "about 40 s, from 3 earlier runs…"


class StudyOut(BaseModel):
    id: str
    created_at: str
    context: dict[str, Any]
    images: list[ImageOut]
    prior_images: list[ImageOut] = Field(
        default_factory=list,
        description="The images of the prior study (`prior_study_id`), timepoint 'prior'.",
    )
    job: JobOut | None = None
    interpretation_url: str
    has_interpretation: bool = False
    disclaimer: str = DISCLAIMER


class StudyCreated(StudyOut):
    created: bool = Field(
        description="False when the same upload or Idempotency-Key already made this study."
    )


class StudyList(BaseModel):
    studies: list[StudyOut]
    disclaimer: str = DISCLAIMER


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content: str = Field(min_length=1, max_length=4000, description="The follow-up question.")
    language: str | None = Field(None, max_length=16)


class MessageOut(BaseModel):
    seq: int
    role: str
    content: str
    created_at: str
    job_id: str | None = None


class FollowupAccepted(BaseModel):
    message: MessageOut
    job: JobOut
    disclaimer: str = DISCLAIMER


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    store: str
    demo: bool
    models_ready: bool
    workers: int
    queued_jobs: int

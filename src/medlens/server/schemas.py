"""Request and response models: the native API and the OpenAI-compatible subset."""

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


class JobOut(BaseModel):
    id: str
    kind: str
    status: str
    progress: float
    stage: str
    study_id: str | None = None
    error: str | None = None
    events_url: str


class StudyOut(BaseModel):
    id: str
    created_at: str
    context: dict[str, Any]
    images: list[ImageOut]
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


# --- OpenAI-compatible ------------------------------------------------------------------
class ImageURL(BaseModel):
    url: str = Field(max_length=60_000_000, description="data:image/...;base64,... only")
    detail: str | None = None


class ContentPart(BaseModel):
    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: ImageURL | None = None


class ChatMessageIn(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str | list[ContentPart]


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # clients send many optional knobs
    model: str | None = None
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=64)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1, le=8192)
    max_completion_tokens: int | None = Field(None, ge=1, le=8192)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = None
    stop: str | list[str] | None = None


class ChoiceMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: ChoiceMessage
    finish_reason: str


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None = None
    disclaimer: str = DISCLAIMER

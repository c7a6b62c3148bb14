"""Request and response models of the review API (/v1/studies/{id}/report...)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from medlens.disclaimer import DISCLAIMER

Verdict = Literal["agree", "disagree"]
ReviewStatus = Literal["draft", "in_review", "signed", "amended"]


class FindingReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = Field(min_length=1, max_length=200)
    verdict: Verdict | None = None
    comment: str = Field("", max_length=2000)


class ReportIn(BaseModel):
    """A new version of the report (the whole structured content, never a patch)."""

    model_config = ConfigDict(extra="forbid")
    findings: str = Field("", max_length=20_000)
    impression: str = Field("", max_length=10_000)
    finding_reviews: list[FindingReviewIn] = Field(default_factory=list, max_length=64)
    base_version: int | None = Field(
        None, ge=0, description="The version you edited (0: the AI draft); 409 if stale."
    )


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int | None = Field(None, ge=1, description="The version you sign; 409 if stale.")


class AddendumIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=10_000)


class ReportContent(BaseModel):
    findings: str = ""
    impression: str = ""
    finding_reviews: list[FindingReviewIn] = Field(default_factory=list)


class AiFinding(BaseModel):
    label: str
    source: str = Field(description="What the AI said: the report's wording and/or a score.")


class ReportVersionOut(BaseModel):
    version: int
    author_id: str | None
    author_name: str
    created_at: str
    content: ReportContent


class SignatureOut(BaseModel):
    version: int
    signer_id: str | None
    signer_name: str
    signed_at: str
    sha256: str = Field(description="SHA-256 of the canonical JSON of the signed document.")


class AddendumOut(BaseModel):
    seq: int
    text: str
    author_id: str | None
    author_name: str
    created_at: str
    sha256: str


class ReviewOut(BaseModel):
    study_id: str
    status: ReviewStatus
    ai_draft: ReportContent = Field(description="What the AI wrote (read-only).")
    ai_findings: list[AiFinding]
    versions: list[ReportVersionOut]
    current: ReportContent = Field(description="The latest version, else the AI draft.")
    signature: SignatureOut | None = None
    addenda: list[AddendumOut] = Field(default_factory=list)
    can_edit: bool = Field(description="Whether the caller may save, sign or add addenda.")
    disclaimer: str = DISCLAIMER


class DiffOp(BaseModel):
    op: Literal["equal", "insert", "delete"]
    text: str


class SectionDiff(BaseModel):
    section: str
    changed: bool
    ops: list[DiffOp]


class DiffOut(BaseModel):
    study_id: str
    version: int | None = Field(description="The compared version (None: nothing saved yet).")
    sections: list[SectionDiff] = Field(description="Word-level diff per section.")
    unified: str = Field(description="Line-level unified diff (AI draft → final).")

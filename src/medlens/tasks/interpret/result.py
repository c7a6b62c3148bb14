"""The Interpretation: the typed, JSON-serialisable result of `interpret`.

Pydantic models so that the JSON Schema (`result.schema.json`, documented in
docs/interpretation-schema.md) is generated from the very classes the code fills in:
`python -m medlens.tasks.interpret.result > src/medlens/tasks/interpret/result.schema.json`.
Bump SCHEMA_VERSION on any incompatible change.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from medlens.disclaimer import DISCLAIMER

SCHEMA_VERSION = "1.1"
VERIFICATION_NOTICE = "Requires verification by a qualified clinician before any clinical use."

MentionStatus = Literal["positive", "negative", "uncertain"]
Laterality = Literal["left", "right", "bilateral"]
UrgencyLevel = Literal["routine", "priority", "urgent"]
ChangeLabel = Literal["new", "worsened", "stable", "improved", "resolved", "not assessable"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReportSections(_Model):
    """The draft report, parsed into sections; `raw_text` is exactly what the model said
    (thinking removed)."""

    technique: str | None = None
    comparison: str | None = None
    findings: str | None = None
    impression: str | None = None
    raw_text: str = ""
    parse_quality: Literal["structured", "partial", "unstructured", "empty"] = Field(
        "empty",
        description="structured: findings and impression headings found; partial: one of them; "
        "unstructured: no headings (text kept in findings); empty: no text.",
    )


class FindingScore(_Model):
    label: str
    probability: float = Field(ge=0.0, le=1.0)


class ImageFindingScores(_Model):
    """Zero-shot encoder scores for one image."""

    image_index: int = Field(description="0-based index into `gate` / provenance inputs.")
    label_set: str
    label_set_version: str = ""
    scores: list[FindingScore]


class Assertion(_Model):
    """What the report text says about one label (rule-based labeler)."""

    label: str
    status: MentionStatus
    laterality: Laterality | None = None
    severity: str | None = None
    evidence: str = Field("", description="The report sentence the label came from.")


class Disagreement(_Model):
    label: str
    kind: Literal[
        "report_positive_score_low", "score_high_report_negative", "score_high_not_mentioned"
    ]
    report_status: MentionStatus | Literal["not_mentioned"]
    score: float
    message: str


class CrossCheck(_Model):
    checked: bool = Field(description="False when scores or an English report were missing.")
    note: str = ""
    source_text: Literal["report", "back_translation", "none"] = "report"
    assertions: list[Assertion] = Field(default_factory=list)
    disagreements: list[Disagreement] = Field(default_factory=list)
    high_threshold: float = 0.0
    low_threshold: float = 0.0


class UrgencyReason(_Model):
    rule_id: str
    level: UrgencyLevel
    reason: str
    evidence: str = ""


class ProbeScore(_Model):
    name: str
    version: str
    probability: float
    threshold: float
    fired: bool


class Urgency(_Model):
    level: UrgencyLevel
    reasons: list[UrgencyReason] = Field(default_factory=list)
    probe: ProbeScore | None = None
    rules_version: str = ""


class SimilarCase(_Model):
    case_id: str
    score: float = Field(description="Cosine similarity in the encoder's embedding space.")
    labels: list[str] = Field(default_factory=list, description="Positive labels of the case.")
    summary: str | None = Field(None, description="Report snippet (untrusted text).")
    thumbnail: str | None = Field(None, description="Blob key of a de-identified thumbnail.")
    library: str = ""


class GateRecord(_Model):
    """The image gate's decision for one input image; refused images get no report."""

    image_index: int
    source_name: str | None = None
    view: str = "unknown"
    timepoint: str = "current"
    accepted: bool
    reason: str = ""
    flags: list[str] = Field(default_factory=list, description="Caveats, e.g. 'lateral view'.")


class LanguageCheck(_Model):
    """Back-translation check for non-English reports."""

    language: str
    back_translation: str
    assertions: list[Assertion] = Field(default_factory=list)
    mismatches: list[str] = Field(default_factory=list)


class FollowUp(_Model):
    """One follow-up question on the study and the model's answer."""

    question: str
    answer: str
    prompt_tokens: int = 0
    output_tokens: int = 0
    images_encoded: int = Field(0, description="Vision-tower runs (0: cached encodings reused).")
    images_cached: int = 0
    seconds: float = 0.0


class ModelProvenance(_Model):
    model_id: str
    backend: str
    source: str
    revision: str
    weights_hash: str
    dtype: str
    device: str
    is_test: bool = False


class PromptRef(_Model):
    name: str
    version: str
    prompt_format: str


class InputImage(_Model):
    image_index: int
    sha256: str
    pixel_sha256: str
    format: str
    source_name: str | None = None


class GenerationSummary(_Model):
    prompt_tokens: int = 0
    output_tokens: int = 0
    images_encoded: int = 0
    images_cached: int = 0
    finish_reason: str = ""


class Region(_Model):
    """One box the generator drew for a finding (or named anatomy) on one image."""

    label: str = Field(description="Finding or anatomy label, as matched (or as the model said).")
    image_index: int = Field(0, description="0-based index into `gate` / provenance inputs.")
    box: list[float] = Field(
        min_length=4,
        max_length=4,
        description="[x0, y0, x1, y1] in the original image's pixels (DICOM: column, row); "
        "x0 < x1, y0 < y1, clipped to the image.",
    )
    box_norm: list[float] = Field(
        min_length=4,
        max_length=4,
        description="[y0, x0, y1, x1] normalised 0-1000 over the padded square, as the model "
        "gave it (after rescaling a 0-1 answer and ordering corners).",
    )
    source_sentence: str | None = Field(
        None, description="The report sentence that names this label; null when none does."
    )
    model: str = Field("", description="Generator model id that produced the box.")
    warnings: list[str] = Field(
        default_factory=list, description="Repairs made while parsing (swapped corners, …)."
    )


class FindingChange(_Model):
    finding: str
    change: ChangeLabel
    evidence: str = Field("", description="The model's sentence or phrase for this change.")


class PriorStudy(_Model):
    description: str = Field("", description="What the prior was (e.g. 'prior image 1').")
    date: str | None = Field(None, description="Prior date as given (ISO-8601 when known).")
    source_study_id: str | None = Field(
        None, description="The MedLens study id the prior came from, when it did."
    )


class Comparison(_Model):
    """The current study compared with a prior one (images and/or report)."""

    prior: PriorStudy = Field(default_factory=PriorStudy)
    sentence: str = Field("", description="One-sentence comparison from the model.")
    changes: list[FindingChange] = Field(default_factory=list)
    model: str = ""
    warnings: list[str] = Field(default_factory=list)


class Provenance(_Model):
    medlens_version: str
    created_at: str = Field(description="UTC ISO-8601 time the interpretation finished.")
    generator: ModelProvenance | None = None
    encoder: ModelProvenance | None = None
    prompt: PromptRef | None = None
    inputs: list[InputImage] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict, description="Seconds per stage.")
    generation: GenerationSummary | None = None
    test_model: bool = Field(False, description="True when any model used is a test model.")


class Interpretation(_Model):
    schema_version: str = SCHEMA_VERSION
    study_id: str
    status: Literal["complete", "refused"] = Field(
        description="refused: every current image was refused by the gate; no report."
    )
    language: str = "en"
    report: ReportSections | None = None
    finding_scores: list[ImageFindingScores] = Field(default_factory=list)
    cross_check: CrossCheck | None = None
    urgency: Urgency | None = None
    similar_cases: list[SimilarCase] | None = Field(
        None, description="None when no case library is configured."
    )
    gate: list[GateRecord] = Field(default_factory=list)
    language_check: LanguageCheck | None = None
    context_used: list[str] = Field(
        default_factory=list, description="Which context fields reached the prompt."
    )
    followups: list[FollowUp] = Field(
        default_factory=list, description="Follow-up questions asked on this study, in order."
    )
    regions: list[Region] = Field(
        default_factory=list, description="Boxes for findings (grounding); empty unless asked."
    )
    comparison: Comparison | None = Field(
        None, description="Change since a prior study; null without a prior."
    )
    warnings: list[str] = Field(default_factory=list)
    provenance: Provenance
    disclaimer: str = DISCLAIMER
    requires_verification: bool = True
    verification_notice: str = VERIFICATION_NOTICE
    test_model_label: str | None = Field(
        None, description="'TEST MODEL: output is not medical' whenever a test model ran."
    )

    def to_json(self, **kwargs: Any) -> str:
        return self.model_dump_json(**kwargs)

    @classmethod
    def from_json(cls, text: str | bytes) -> Interpretation:
        return cls.model_validate_json(text)

    def scores_for(self, image_index: int | None = None) -> dict[str, float]:
        """Label → probability for one image (default: the first scored image)."""
        for block in self.finding_scores:
            if image_index is None or block.image_index == image_index:
                return {s.label: s.probability for s in block.scores}
        return {}


def json_schema() -> dict[str, Any]:
    schema = Interpretation.model_json_schema()
    schema["$id"] = f"https://medlens.local/schemas/interpretation-{SCHEMA_VERSION}.json"
    schema["title"] = "MedLens Interpretation"
    return schema


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":  # regenerate the committed schema file
    print(schema_text(), end="")

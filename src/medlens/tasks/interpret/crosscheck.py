"""Cross-check: what the report says (rule-based labeler) against the encoder's scores.

The two come from different models (MedGemma writes, MedSigLIP scores), so where they
disagree a clinician should look twice. Rules, per label present in both:
- report asserts it (positive) but its score < low_threshold → "report_positive_score_low"
- report negates it but its score ≥ high_threshold → "score_high_report_negative"
- report does not mention it but its score ≥ high_threshold → "score_high_not_mentioned"
Uncertain statements ("may represent atelectasis") are never disagreements. "No Finding"
counts as negated by the report when the report asserts any pathology.
The default thresholds suit the pos-vs-neg paired probabilities of tasks.classify (0.5 =
no preference); they are data, not tuned on any reader study.
"""

from __future__ import annotations

from collections.abc import Mapping

from medlens.shapes import from_attributes
from medlens.tasks.interpret.labeler import Mention, label_report
from medlens.tasks.interpret.result import Assertion, CrossCheck, Disagreement

DEFAULT_HIGH = 0.7
DEFAULT_LOW = 0.3


def _norm(label: str) -> str:
    return label.lower().replace("_", " ").strip()


def assertions_from(mentions: Mapping[str, Mention]) -> list[Assertion]:
    return [from_attributes(Assertion, m) for m in mentions.values()]


def cross_check(
    report_text: str,
    scores: Mapping[str, float],
    *,
    high: float = DEFAULT_HIGH,
    low: float = DEFAULT_LOW,
    mentions: Mapping[str, Mention] | None = None,
    source_text: str = "report",
) -> CrossCheck:
    """Compare the labeler's reading of `report_text` with per-label probabilities."""
    found = dict(mentions) if mentions is not None else label_report(report_text)
    by_norm = {_norm(k): v for k, v in found.items()}
    any_pathology = any(
        m.status == "positive"
        for k, m in found.items()
        if k not in ("No Finding", "Support Devices")
    )
    disagreements: list[Disagreement] = []
    for label, score in scores.items():
        mention = by_norm.get(_norm(label))
        status = mention.status if mention else "not_mentioned"
        if _norm(label) == "no finding" and mention is None and any_pathology:
            status = "negative"
        if status == "positive" and score < low:
            disagreements.append(
                Disagreement(
                    label=label,
                    kind="report_positive_score_low",
                    report_status="positive",
                    score=score,
                    message=f"The report asserts {label} but the encoder scores it "
                    f"low ({score:.2f} < {low:.2f}).",
                )
            )
        elif status == "negative" and score >= high:
            disagreements.append(
                Disagreement(
                    label=label,
                    kind="score_high_report_negative",
                    report_status="negative",
                    score=score,
                    message=f"The report negates {label} but the encoder scores it "
                    f"high ({score:.2f} ≥ {high:.2f}).",
                )
            )
        elif status == "not_mentioned" and score >= high and _norm(label) != "no finding":
            disagreements.append(
                Disagreement(
                    label=label,
                    kind="score_high_not_mentioned",
                    report_status="not_mentioned",
                    score=score,
                    message=f"The encoder scores {label} high ({score:.2f}) but the "
                    "report does not mention it.",
                )
            )
    disagreements.sort(key=lambda d: -abs(d.score - 0.5))
    return CrossCheck(
        checked=True,
        source_text=source_text,  # type: ignore[arg-type]
        assertions=assertions_from(found),
        disagreements=disagreements,
        high_threshold=high,
        low_threshold=low,
    )


def not_checked(note: str, mentions: Mapping[str, Mention] | None = None) -> CrossCheck:
    return CrossCheck(
        checked=False, note=note, source_text="none", assertions=assertions_from(mentions or {})
    )


def check_report(
    english_text: str,
    language: str,
    scores: Mapping[str, float],
    mentions: Mapping[str, Mention],
    *,
    source: str,
    chest: bool,
    high: float = DEFAULT_HIGH,
    low: float = DEFAULT_LOW,
) -> CrossCheck:
    """The pipeline's cross-check stage, or why the report was not checked."""
    if not chest:
        return not_checked("The report labeler and cross-check cover chest X-rays only.")
    if not english_text:
        return not_checked(
            f"The report is in {language}; run with the back-translation check to cross-check it."
        )
    if not scores:
        return not_checked("No finding scores (no encoder or scores disabled).", mentions)
    return cross_check(
        english_text, scores, mentions=mentions, source_text=source, high=high, low=low
    )

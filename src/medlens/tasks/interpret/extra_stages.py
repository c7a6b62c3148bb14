"""The two MedGemma 1.5 stages of `interpret`: compare (with a prior) and ground (boxes),
and how the comparison changes urgency.

Urgency: a pneumothorax the comparison calls new or worsened is urgent (rule C01, even
when the report's own wording was only "possible"); one it calls stable, improved or
resolved on prior IMAGES turns the report rule U01 from urgent into priority (C02) — a
known, unchanged pneumothorax still needs a look, not an alarm. Over-triage stays the
safe error: nothing else is lowered, and a comparison from a prior report alone never
lowers anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from medlens.tasks.interpret.result import Comparison, Region, Urgency, UrgencyReason

if TYPE_CHECKING:
    from medlens.models.protocols import Generator, ImagePart
    from medlens.tasks.interpret.labeler import Mention
    from medlens.tasks.interpret.options import InterpretOptions
    from medlens.tasks.interpret.result import ReportSections
    from medlens.tasks.interpret.study import Study, StudyImage

_ESCALATE = ("new", "worsened")
_SETTLED = ("stable", "improved", "resolved")
TRAINED_FORMAT = "medgemma-1.5"


def study_comparison(
    study: Study,
    images: Sequence[StudyImage],
    parts: Sequence[ImagePart],
    options: InterpretOptions,
    generator: Generator,
    warnings: list[str],
) -> Comparison | None:
    """The comparison stage: None unless the study has a prior (images or a report)."""
    from medlens.tasks.interpret.comparison import compare

    pairs = [(img, part) for img, part in zip(images, parts, strict=False)]
    priors = [p for p in pairs if p[0].timepoint == "prior"]
    current = [p for p in pairs if p[0].timepoint == "current" and p[0].view != "lateral"]
    has_report = bool(study.prior and study.prior.report)
    if not (options.compare and study.modality == "cxr" and current and (priors or has_report)):
        return None
    result, _template, _raw = compare(
        generator,
        study,
        current[:1],
        priors[:1],
        prompt_format=options.prompt_format,
        thinking=options.thinking,
    )
    if options.prompt_format != TRAINED_FORMAT:
        result.warnings.append("Comparison was trained in MedGemma 1.5; this model may not.")
    if len(priors) > 1:
        result.warnings.append("Several prior images: only the first was compared.")
    warnings.extend(f"Comparison: {w}" for w in result.warnings)
    return result


def study_regions(
    study: Study,
    images: Sequence[StudyImage],
    parts: Sequence[ImagePart],
    indices: Sequence[int],
    report: ReportSections | None,
    mentions: dict[str, Mention],
    options: InterpretOptions,
    generator: Generator,
    warnings: list[str],
) -> list[Region]:
    """The ground stage: boxes on the primary current image for the report's findings."""
    from medlens.tasks.interpret.grounding import finding_labels, ground_image

    if not options.ground or study.modality != "cxr" or report is None:
        return []
    primary = next(
        (n for n, img in enumerate(images) if img.timepoint == "current" and img.view != "lateral"),
        None,
    )
    labels = finding_labels(mentions)
    if primary is None or not labels:
        warnings.append("Grounding: the report names no finding to locate.")
        return []
    img = images[primary]
    result = ground_image(
        generator,
        parts[primary],
        img.ingested.image.size,
        labels,
        prompt_format=options.prompt_format,
        report=report,
        image_index=indices[primary],
    )
    if options.prompt_format != TRAINED_FORMAT:
        result.warnings.append("Grounding was trained in MedGemma 1.5; this model may not.")
    warnings.extend(result.warnings)
    return result.regions


def apply_comparison(
    urgency: Urgency | None, comparison: Comparison | None, mentions: dict[str, Mention]
) -> Urgency | None:
    """Urgency with the comparison's pneumothorax change taken into account (C01, C02);
    the comparison is cross-checked against the report's assertions first."""
    from medlens.tasks.interpret.comparison import check_against_report

    if comparison is not None:
        check_against_report(comparison, mentions)
    if urgency is None or comparison is None:
        return urgency
    change = next((c for c in comparison.changes if c.finding == "Pneumothorax"), None)
    if change is None:
        return urgency
    when = f" (prior {comparison.prior.date})" if comparison.prior.date else ""
    reasons = list(urgency.reasons)
    if change.change in _ESCALATE:
        reasons.insert(
            0,
            UrgencyReason(
                rule_id="C01",
                level="urgent",
                reason=f"Pneumothorax {change.change} since the prior study{when}.",
                evidence=change.evidence,
            ),
        )
        return urgency.model_copy(update={"level": "urgent", "reasons": reasons})
    on_images = not comparison.prior.description.startswith("no prior image")
    if change.change in _SETTLED and on_images and any(r.rule_id == "U01" for r in reasons):
        reasons = [
            _downgraded(r, change.change, when) if r.rule_id == "U01" else r for r in reasons
        ]
        order = {"routine": 0, "priority": 1, "urgent": 2}
        reasons.sort(key=lambda r: -order[r.level])
        level = reasons[0].level if reasons else "routine"
        if urgency.probe is not None and urgency.probe.fired:
            level = "urgent"
        return urgency.model_copy(update={"level": level, "reasons": reasons})
    return urgency


def _downgraded(reason: UrgencyReason, change: str, when: str) -> UrgencyReason:
    return UrgencyReason(
        rule_id="C02",
        level="priority",
        reason=f"Pneumothorax reported, {change} since the prior study{when}: priority, "
        "not urgent (rule U01 lowered by the comparison).",
        evidence=reason.evidence,
    )

"""Urgency: routine / priority / urgent from documented rules (+ an optional trained probe).

Rules read the labeler's assertions over the English report, or over the English
back-translation of a report in another language (on by default everywhere); without one,
French, Spanish, German, Portuguese and Italian reports are read by keyword rules
(tasks.interpret.urgency_native) that yield the same assertions, and the encoder's scores
feed one safety-net rule. Each rule has a stable id that is recorded in the Interpretation, so
a reader can see exactly why a study was flagged. The table is documented in
docs/interpreter.md; change RULES_VERSION when a rule changes.

Probe hook: when settings.probes has "urgent", medlens.tasks.classify.probes.load_probe(path) is
applied to the primary image's encoder embedding; a probability at or above the probe's
own threshold makes the study urgent (rule P01). Over-triage is the safe error here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from medlens.tasks.interpret.result import ProbeScore, Urgency, UrgencyLevel, UrgencyReason

if TYPE_CHECKING:
    import numpy as np

    from medlens.tasks.interpret.labeler import Mention

RULES_VERSION = "1.0"
_ORDER = {"routine": 0, "priority": 1, "urgent": 2}


@dataclass(frozen=True)
class Rule:
    id: str
    label: str
    level: UrgencyLevel
    reason: str
    statuses: tuple[str, ...] = ("positive",)
    severities: tuple[str, ...] | None = None  # None: any severity (or none stated)
    unless: str | None = None  # regex on the evidence sentence that cancels the rule


RULES: tuple[Rule, ...] = (
    Rule("U01", "Pneumothorax", "urgent", "Pneumothorax reported."),
    Rule("U02", "Pneumothorax", "priority", "Possible pneumothorax reported.", ("uncertain",)),
    Rule(
        "U03",
        "Pleural Effusion",
        "urgent",
        "Large pleural effusion reported.",
        severities=("large",),
    ),
    Rule(
        "U04",
        "Pleural Effusion",
        "priority",
        "Moderate pleural effusion reported.",
        severities=("moderate",),
    ),
    Rule(
        "U05",
        "Pneumoperitoneum",
        "urgent",
        "Free intraperitoneal air reported.",
        ("positive", "uncertain"),
    ),
    Rule("U06", "Malpositioned Device", "urgent", "Malpositioned tube or line reported."),
    Rule(
        "U07",
        "Malpositioned Device",
        "priority",
        "Possibly malpositioned tube or line.",
        ("uncertain",),
    ),
    Rule(
        "U08",
        "Enlarged Cardiomediastinum",
        "priority",
        "Widened mediastinum reported (consider aortic pathology).",
    ),
    Rule("U09", "Pneumonia", "priority", "Pneumonia reported."),
    Rule("U10", "Consolidation", "priority", "Consolidation reported."),
    Rule("U11", "Edema", "priority", "Pulmonary edema reported."),
    Rule("U12", "Lung Lesion", "priority", "Lung nodule or mass reported (needs follow-up)."),
    Rule(
        "U13",
        "Fracture",
        "priority",
        "Fracture reported (not described as old).",
        unless=r"\b(?:healed|healing|old|remote|chronic)\b",
    ),
)
# Text rules catch what the label set cannot express.
TEXT_RULES: tuple[tuple[str, UrgencyLevel, str, re.Pattern[str]], ...] = (
    (
        "T01",
        "urgent",
        "Tension physiology mentioned.",
        re.compile(r"\btension (?:pneumothorax|physiology)|mediastinal shift", re.I),
    ),
    (
        "T02",
        "urgent",
        "Critical finding language in the report.",
        re.compile(
            r"\b(?:critical (?:finding|result)|emergen\w+|immediate(?:ly)? (?:attention|"
            r"notification|review))\b",
            re.I,
        ),
    ),
)
# Encoder safety net: a very high score the report does not assert still raises priority.
SCORE_RULES: tuple[tuple[str, str, float], ...] = (("S01", "Pneumothorax", 0.85),)


def _max_level(levels: list[UrgencyLevel]) -> UrgencyLevel:
    return max(levels, key=_ORDER.__getitem__) if levels else "routine"


def assess_urgency(
    mentions: Mapping[str, Mention],
    report_text: str = "",
    scores: Mapping[str, float] | None = None,
    probe: ProbeScore | None = None,
    extra: tuple[UrgencyReason, ...] = (),
) -> Urgency:
    """`extra`: reasons already found elsewhere (the non-English text rules)."""
    reasons: list[UrgencyReason] = list(extra)
    for rule in RULES:
        m = mentions.get(rule.label)
        if m is None or m.status not in rule.statuses:
            continue
        if rule.severities is not None and m.severity not in rule.severities:
            continue
        if rule.unless and re.search(rule.unless, m.evidence, re.I):
            continue
        reasons.append(
            UrgencyReason(
                rule_id=rule.id, level=rule.level, reason=rule.reason, evidence=m.evidence
            )
        )
    for rule_id, level, reason, rx in TEXT_RULES:
        hit = rx.search(report_text or "")
        if hit and not re.search(
            r"\bno\s+(?:\w+\s+){0,2}$", report_text[: hit.start()][-30:], re.I
        ):
            reasons.append(
                UrgencyReason(rule_id=rule_id, level=level, reason=reason, evidence=hit.group(0))
            )
    for rule_id, label, threshold in SCORE_RULES:
        score = (scores or {}).get(label)
        asserted = mentions.get(label)
        if (
            score is not None
            and score >= threshold
            and not (asserted and asserted.status == "positive")
        ):
            reasons.append(
                UrgencyReason(
                    rule_id=rule_id,
                    level="priority",
                    reason=f"Encoder scores {label} {score:.2f} (≥ {threshold}) although the "
                    "report does not assert it.",
                    evidence=f"{label}={score:.2f}",
                )
            )
    if probe is not None and probe.fired:
        reasons.append(
            UrgencyReason(
                rule_id="P01",
                level="urgent",
                reason=f"Trained probe {probe.name!r} v{probe.version}: probability "
                f"{probe.probability:.2f} ≥ threshold {probe.threshold:.2f}.",
                evidence=f"{probe.name}={probe.probability:.3f}",
            )
        )
    reasons.sort(key=lambda r: -_ORDER[r.level])
    return Urgency(
        level=_max_level([r.level for r in reasons]),
        reasons=reasons,
        probe=probe,
        rules_version=RULES_VERSION,
    )


def run_urgent_probe(probe_path: str, embedding: np.ndarray) -> ProbeScore:
    """Apply the configured "urgent" probe (medlens.tasks.classify.probes) to one embedding."""
    from medlens.tasks.classify.probes import load_probe

    probe = load_probe(probe_path)
    p = float(probe.predict_proba(embedding.reshape(1, -1))[0])
    return ProbeScore(
        name=probe.name,
        version=str(probe.version),
        probability=p,
        threshold=float(probe.threshold),
        fired=p >= float(probe.threshold),
    )


def study_urgency(
    probe_path: str | None,
    embedding: np.ndarray | None,
    mentions: Mapping[str, Mention],
    english_text: str,
    scores: Mapping[str, float],
    warnings: list[str],
    report: tuple[str, str] | None = None,
) -> Urgency:
    """The pipeline's urgency stage (chest X-ray): rules, plus the "urgent" probe on the
    primary image's embedding when one is configured. `report`: (language, text) of the
    report as written, read by keyword rules when there is no English text."""
    from medlens.errors import MedLensError
    from medlens.tasks.interpret.urgency_native import read_native

    probe = None
    if probe_path and embedding is not None:
        try:
            probe = run_urgent_probe(probe_path, embedding)
        except MedLensError as err:  # a broken probe file must not lose the report
            warnings.append(f"Urgency probe not used: {err}")
    native = read_native(*report) if report is not None and not english_text else None
    if native is not None:
        mentions = native.mentions
        warnings.append(
            f"Urgency rules read the report in its own language ({native.language}) with "
            "keyword rules, as no English back-translation was available."
        )
    elif not english_text:
        warnings.append("Urgency rules read English text only; only scores were used.")
    return assess_urgency(
        mentions, english_text, scores, probe, native.reasons if native is not None else ()
    )

"""Urgency rules and the report-vs-scores cross-check."""

from __future__ import annotations

import pytest

from medlens.tasks.interpret.crosscheck import cross_check
from medlens.tasks.interpret.labeler import label_report
from medlens.tasks.interpret.result import ProbeScore
from medlens.tasks.interpret.urgency import RULES, assess_urgency

URGENCY = [
    ("Small left apical pneumothorax.", "urgent", "U01"),
    ("Pneumothorax cannot be excluded.", "priority", "U02"),
    ("Large right pleural effusion.", "urgent", "U03"),
    ("Moderate left pleural effusion.", "priority", "U04"),
    ("Small left pleural effusion.", "routine", None),
    ("Free air under the right hemidiaphragm.", "urgent", "U05"),
    ("Endotracheal tube in the right mainstem bronchus.", "urgent", "U06"),
    ("Widened mediastinum.", "priority", "U08"),
    ("Right lower lobe pneumonia.", "priority", "U09"),
    ("Tension pneumothorax on the left.", "urgent", "T01"),
    ("No mediastinal shift. No pneumothorax.", "routine", None),
    ("No acute cardiopulmonary process.", "routine", None),
    ("Acute displaced fracture of the right clavicle.", "priority", "U13"),
    ("Healed left rib fracture.", "routine", None),
]


@pytest.mark.parametrize(("text", "level", "rule"), URGENCY)
def test_urgency_rules(text: str, level: str, rule: str | None) -> None:
    u = assess_urgency(label_report(text), text)
    assert u.level == level
    ids = [r.rule_id for r in u.reasons]
    assert (rule in ids) if rule else ids == []
    assert all(r.reason for r in u.reasons)


def test_rule_ids_are_unique() -> None:
    assert len({r.id for r in RULES}) == len(RULES)


def test_score_safety_net_and_probe() -> None:
    u = assess_urgency({}, "", {"Pneumothorax": 0.9})
    assert u.level == "priority" and u.reasons[0].rule_id == "S01"
    assert assess_urgency({}, "", {"Pneumothorax": 0.5}).level == "routine"
    probe = ProbeScore(name="urgent", version="1", probability=0.2, threshold=0.5, fired=False)
    assert assess_urgency({}, "", None, probe).level == "routine"
    fired = probe.model_copy(update={"probability": 0.8, "fired": True})
    assert assess_urgency({}, "", None, fired).level == "urgent"


def test_crosscheck_kinds() -> None:
    text = "Large right pleural effusion. No pneumothorax."
    scores = {"Pleural Effusion": 0.1, "Pneumothorax": 0.9, "Edema": 0.95, "Cardiomegaly": 0.5,
              "No Finding": 0.8}
    cc = cross_check(text, scores)
    kinds = {d.label: d.kind for d in cc.disagreements}
    assert kinds == {"Pleural Effusion": "report_positive_score_low",
                     "Pneumothorax": "score_high_report_negative",
                     "Edema": "score_high_not_mentioned",
                     "No Finding": "score_high_report_negative"}


def test_crosscheck_agreement_and_uncertain() -> None:
    cc = cross_check("Possible pneumonia. Large right pleural effusion.",
                     {"Pneumonia": 0.05, "Pleural Effusion": 0.9})
    assert cc.checked and cc.disagreements == []

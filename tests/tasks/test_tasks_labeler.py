"""The rule-based report labeler against a table of report sentences.

Each row: sentence → expected {label: status[/laterality[/severity]]}. Labels not listed
must be absent (except "No Finding", checked only where listed or listed as absent "-").
"""

from __future__ import annotations

import pytest

from medlens.tasks.interpret.labeler import (
    CHEXPERT_LABELS,
    label_report,
    label_vector,
    split_sentences,
)

P, N, U = "positive", "negative", "uncertain"

TABLE: list[tuple[str, dict[str, str]]] = [
    # normal studies
    ("No acute cardiopulmonary process.", {"No Finding": P}),
    ("No acute cardiopulmonary abnormality.", {"No Finding": P}),
    ("Impression: No acute intrathoracic process.", {"No Finding": P}),
    ("Normal chest radiograph.", {"No Finding": P}),
    ("The study is unremarkable.", {"No Finding": P}),
    ("Heart size is normal. Lungs are clear.", {"Cardiomegaly": N, "Lung Opacity": N,
                                                "No Finding": P}),
    ("The cardiomediastinal silhouette is within normal limits.",
     {"Enlarged Cardiomediastinum": N, "No Finding": P}),
    ("Costophrenic angles are sharp.", {"Pleural Effusion": N, "No Finding": P}),
    # negation, including lists under one negation
    ("No pneumothorax.", {"Pneumothorax": N, "No Finding": P}),
    ("No pneumothorax, pleural effusion, or focal consolidation.",
     {"Pneumothorax": N, "Pleural Effusion": N, "Consolidation": N, "No Finding": P}),
    ("There is no evidence of pneumonia.", {"Pneumonia": N, "No Finding": P}),
    ("Without pleural effusion or pneumothorax.", {"Pleural Effusion": N, "Pneumothorax": N,
                                                   "No Finding": P}),
    ("Negative for acute fracture.", {"Fracture": N, "No Finding": P}),
    ("Pneumothorax is not seen.", {"Pneumothorax": N, "No Finding": P}),
    ("The previously seen left effusion has resolved.", {"Pleural Effusion": N,
                                                         "No Finding": P}),
    ("The heart is not enlarged.", {"Cardiomegaly": N, "No Finding": P}),
    ("No pneumothorax. Small left pleural effusion.",
     {"Pneumothorax": N, "Pleural Effusion": "positive/left/small", "No Finding": "-"}),
    ("No pneumothorax, small right pleural effusion.",
     {"Pneumothorax": N, "Pleural Effusion": "positive/right/small", "No Finding": "-"}),
    ("No significant change in the large right pleural effusion.",
     {"Pleural Effusion": "positive/right/large"}),
    # positive findings with laterality and severity
    ("Large right pleural effusion.", {"Pleural Effusion": "positive/right/large"}),
    ("Moderate bilateral pleural effusions.", {"Pleural Effusion": "positive/bilateral/moderate"}),
    ("Left apical pneumothorax.", {"Pneumothorax": "positive/left"}),
    ("Small right pneumothorax has increased in size.", {"Pneumothorax": "positive/right/small"}),
    ("Cardiomegaly with mild pulmonary edema.", {"Cardiomegaly": P, "Edema": "positive"}),
    ("The heart is moderately enlarged.", {"Cardiomegaly": P}),
    ("Right lower lobe consolidation consistent with pneumonia.",
     {"Consolidation": "positive/right", "Pneumonia": U}),
    ("Left lower lobe atelectasis.", {"Atelectasis": "positive/left"}),
    ("Bibasilar atelectasis.", {"Atelectasis": "positive/bilateral"}),
    ("A 1.5 cm nodule in the right upper lobe.", {"Lung Lesion": "positive/right"}),
    ("Patchy opacities in both lungs.", {"Lung Opacity": "positive/bilateral"}),
    ("Healed fracture of the left seventh rib.", {"Fracture": "positive/left"}),
    ("Left pleural thickening.", {"Pleural Other": "positive/left"}),
    ("Widened mediastinum.", {"Enlarged Cardiomediastinum": P}),
    ("Pulmonary vascular congestion.", {"Edema": P}),
    ("Free air under the right hemidiaphragm.", {"Pneumoperitoneum": P}),
    # devices
    ("Endotracheal tube terminates 4 cm above the carina.", {"Support Devices": P,
                                                             "No Finding": P}),
    ("Right PICC line with tip in the superior vena cava.", {"Support Devices": "positive/right",
                                                             "No Finding": P}),
    ("Left-sided pacemaker with leads in the right atrium and ventricle.",
     {"Support Devices": P, "No Finding": P}),
    ("The endotracheal tube is in the right mainstem bronchus and should be withdrawn.",
     {"Support Devices": P, "Malpositioned Device": P}),
    ("The chest tube has been removed.", {"Support Devices": N, "No Finding": P}),
    # uncertainty
    ("Right lower lobe opacity may represent atelectasis or pneumonia.",
     {"Lung Opacity": "positive/right", "Atelectasis": U, "Pneumonia": U}),
    ("Small left pneumothorax cannot be excluded.", {"Pneumothorax": U}),
    ("Possible small left pleural effusion.", {"Pleural Effusion": "uncertain/left/small"}),
    ("Findings are suspicious for pneumonia.", {"Pneumonia": U}),
    ("Atelectasis versus consolidation at the left base.",
     {"Atelectasis": U, "Consolidation": U}),
    ("Borderline cardiomegaly.", {"Cardiomegaly": U}),
    ("Questionable nodule in the left upper lobe.", {"Lung Lesion": "uncertain/left"}),
    ("Mild interstitial edema is likely.", {"Edema": U}),
    # mixed sentences and scope breaks
    ("No pneumothorax but there is a small right pleural effusion.",
     {"Pneumothorax": N, "Pleural Effusion": "positive/right/small"}),
    ("No focal consolidation; however, there is left basilar atelectasis.",
     {"Consolidation": N, "Atelectasis": "positive/left"}),
    ("Stable cardiomegaly. No acute cardiopulmonary process.",
     {"Cardiomegaly": P, "No Finding": "-"}),
    ("Small left pleural effusion and right basilar atelectasis.",
     {"Pleural Effusion": "positive/left/small", "Atelectasis": "positive/right"}),
    # phrasing typical of generated reports
    ("There is no evidence of focal consolidation, pleural effusion, or pneumothorax.",
     {"Consolidation": N, "Pleural Effusion": N, "Pneumothorax": N, "No Finding": P}),
    ("The lungs are clear without focal consolidation, effusion, or pneumothorax.",
     {"Lung Opacity": N, "Consolidation": N, "Pleural Effusion": N, "Pneumothorax": N,
      "No Finding": P}),
    ("The cardiomediastinal silhouette is normal in size.",
     {"Enlarged Cardiomediastinum": N, "No Finding": P}),
    ("There is a left-sided pleural effusion.", {"Pleural Effusion": "positive/left"}),
    ("Atelectasis is seen at the lung bases bilaterally.",
     {"Atelectasis": "positive/bilateral"}),
    ("Heart size is mildly enlarged.", {"Cardiomegaly": "positive"}),
    ("No pleural effusion is seen on the left; small right effusion.",
     {"Pleural Effusion": "positive/right/small"}),
    ("There is a moderate-sized right pneumothorax.",
     {"Pneumothorax": "positive/right/moderate"}),
    ("Pneumonia is not excluded.", {"Pneumonia": U}),
    ("Resolved right lower lobe pneumonia.", {"Pneumonia": N, "No Finding": P}),
    ("Enteric tube tip is coiled in the esophagus.",
     {"Support Devices": P, "Malpositioned Device": P}),
    ("No evidence of free air under the diaphragm.", {"Pneumoperitoneum": N, "No Finding": P}),
    ("No acute osseous abnormality.", {"No Finding": "-"}),
]


def _check(sentence: str, expected: dict[str, str]) -> None:
    got = label_report(sentence)
    for label, spec in expected.items():
        if spec == "-":
            assert label not in got, f"{sentence!r}: {label} should be absent, got {got[label]}"
            continue
        status, *rest = spec.split("/")
        assert label in got, f"{sentence!r}: {label} missing (got {sorted(got)})"
        m = got[label]
        assert m.status == status, f"{sentence!r}: {label} {m.status} != {status}"
        if rest:
            assert m.laterality == rest[0], f"{sentence!r}: {label} laterality {m.laterality}"
        if len(rest) > 1:
            assert m.severity == rest[1], f"{sentence!r}: {label} severity {m.severity}"
    extra = set(got) - set(expected) - {"No Finding"}
    assert not extra, f"{sentence!r}: unexpected labels {sorted(extra)}"


def test_table_has_at_least_forty_rows() -> None:
    assert len(TABLE) >= 40


@pytest.mark.parametrize(("sentence", "expected"), TABLE, ids=[t[0][:40] for t in TABLE])
def test_labeler_table(sentence: str, expected: dict[str, str]) -> None:
    _check(sentence, expected)


def test_positive_beats_negative_across_sentences() -> None:
    got = label_report("No pleural effusion on the right. Small left pleural effusion.")
    assert got["Pleural Effusion"].status == "positive"
    assert got["Pleural Effusion"].laterality == "left"


def test_whole_report_with_headings() -> None:
    text = ("**Findings:**\n- Large right pleural effusion.\n- No pneumothorax.\n"
            "**Impression:**\n1. Large right pleural effusion.")
    got = label_report(text)
    assert got["Pleural Effusion"].status == "positive"
    assert got["Pneumothorax"].status == "negative"
    assert "No Finding" not in got


def test_label_vector_codes() -> None:
    vec = label_vector("Possible pneumonia. No pneumothorax. Cardiomegaly.")
    assert set(vec) == set(CHEXPERT_LABELS)
    assert vec["Pneumonia"] == -1 and vec["Pneumothorax"] == 0 and vec["Cardiomegaly"] == 1
    assert vec["Edema"] is None and vec["No Finding"] is None


def test_empty_report_has_no_labels() -> None:
    assert label_report("") == {}
    assert label_report("   ") == {}


def test_sentence_split_keeps_decimals() -> None:
    assert split_sentences("A 1.5 cm nodule. No effusion.") == ["A 1.5 cm nodule.", "No effusion."]

"""The report parser accepts the heading styles models produce and never fails."""

from __future__ import annotations

import pytest

from medlens.tasks.interpret.report_parser import parse_report

CASES = [
    ("Technique: PA.\nFindings: Lungs clear.\nImpression: Normal.", "PA.", "Lungs clear.",
     "Normal."),
    ("**Technique:** PA.\n\n**Findings:**\nLungs clear.\n\n**Impression:**\nNormal.", "PA.",
     "Lungs clear.", "Normal."),
    ("## Findings\nLungs clear.\n## Impression\nNormal.", None, "Lungs clear.", "Normal."),
    ("FINDINGS: Lungs clear.\nIMPRESSION: Normal.", None, "Lungs clear.", "Normal."),
    ("1. Findings - Lungs clear.\n2. Impression - Normal.", None, "Lungs clear.", "Normal."),
    ("Findings:\n- Lungs clear.\n- No effusion.\nConclusion: Normal.", None,
     "- Lungs clear.\n- No effusion.", "Normal."),
    ("Befund: Lunge frei.\nBeurteilung: Normal.", None, "Lunge frei.", "Normal."),
    ("检查所见：双肺清晰。\n印象：正常。", None, "双肺清晰。", "正常。"),
]


@pytest.mark.parametrize(("text", "technique", "findings", "impression"), CASES)
def test_heading_styles(text: str, technique: str | None, findings: str,
                        impression: str) -> None:
    r = parse_report(text)
    assert (r.technique, r.findings, r.impression) == (technique, findings, impression)
    assert r.parse_quality == "structured" and r.raw_text == text


def test_no_headings_keeps_everything_as_findings() -> None:
    r = parse_report("The lungs are clear. No effusion.")
    assert r.parse_quality == "unstructured" and r.findings == "The lungs are clear. No effusion."
    assert r.impression is None


def test_impression_only_uses_the_preamble_as_findings() -> None:
    r = parse_report("Lungs clear, heart normal.\nImpression: Normal study.")
    assert r.parse_quality == "partial"
    assert r.findings == "Lungs clear, heart normal." and r.impression == "Normal study."


def test_comparison_and_repeated_sections() -> None:
    r = parse_report("Comparison: 2020 film.\nFindings: A.\nFindings: B.\nImpression: C.")
    assert r.comparison == "2020 film." and r.findings == "A.\nB."


def test_words_inside_sentences_are_not_headings() -> None:
    r = parse_report("Findings: The impression of the heart is normal.\nImpression: ok")
    assert r.findings == "The impression of the heart is normal."


@pytest.mark.parametrize("text", ["", "   ", "\n\n"])
def test_empty(text: str) -> None:
    assert parse_report(text).parse_quality == "empty"

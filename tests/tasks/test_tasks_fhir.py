"""Interpretation → FHIR R4 DiagnosticReport (the one builder), validated with fhir.resources."""

from __future__ import annotations

from fhir.resources.R4B.diagnosticreport import DiagnosticReport

from medlens.disclaimer import DISCLAIMER
from medlens.tasks.interpret.fhir import to_diagnostic_report
from medlens.tasks.interpret.result import (
    FindingScore,
    GateRecord,
    ImageFindingScores,
    Interpretation,
    Provenance,
    ReportSections,
    Urgency,
    UrgencyReason,
)


def _complete() -> Interpretation:
    return Interpretation(
        study_id="s1", status="complete", language="en",
        report=ReportSections(findings="Small <b>right</b> effusion & atelectasis.",
                              impression="Right pleural effusion.", raw_text="...",
                              parse_quality="structured"),
        finding_scores=[ImageFindingScores(image_index=0, label_set="cxr", scores=[
            FindingScore(label="Pleural Effusion", probability=0.81),
            FindingScore(label="Pneumothorax", probability=0.04)])],
        urgency=Urgency(level="priority", reasons=[UrgencyReason(
            rule_id="effusion", level="priority", reason="effusion")]),
        provenance=Provenance(medlens_version="0.1.0", created_at="2026-11-28T05:00:00+00:00"),
    )


def test_complete_interpretation_is_a_valid_preliminary_report():
    fhir = to_diagnostic_report(_complete(), study_created="2026-11-28T04:59:00+00:00")
    report = DiagnosticReport.model_validate(fhir)
    assert report.status == "preliminary"
    assert report.meta.tag[0].code == "AIAST"
    assert report.conclusion.startswith("Right pleural effusion.")
    assert DISCLAIMER in report.conclusion
    observed = [o for o in fhir["contained"] if o["resourceType"] == "Observation"]
    observations = {o["code"]["text"]: o for o in observed}
    effusion = next(o for k, o in observations.items() if k.startswith("Pleural Effusion"))
    assert effusion["valueQuantity"]["value"] == 0.81
    assert observations["Urgency (AI triage suggestion)"]["valueCodeableConcept"]["text"] == \
        "priority"
    assert [r.reference for r in report.result] == [f"#{o['id']}" for o in observed]
    # The narrative is XHTML with the report text escaped, never raw markup.
    assert "&lt;b&gt;right&lt;/b&gt; effusion &amp; atelectasis" in report.text.div
    assert DISCLAIMER in report.presentedForm[0].data.decode()


def test_refused_interpretation_says_why_and_has_no_scores():
    interp = Interpretation(
        study_id="s2", status="refused",
        gate=[GateRecord(image_index=0, accepted=False, reason="looks like a CT slice")],
        provenance=Provenance(medlens_version="0.1.0", created_at="2026-11-28T05:00:00+00:00"))
    fhir = to_diagnostic_report(interp)
    report = DiagnosticReport.model_validate(fhir)
    text = report.presentedForm[0].data.decode()
    assert "refused" in text and "CT slice" in text and DISCLAIMER in text
    assert report.result is None
    assert [r["resourceType"] for r in fhir["contained"]] == ["Provenance"]


def test_same_interpretation_same_resource_and_json_round_trip():
    interp = _complete()
    first = to_diagnostic_report(interp, study_created="2026-11-28T04:59:00+00:00")
    again = to_diagnostic_report(Interpretation.from_json(interp.to_json()),
                                 study_created="2026-11-28T04:59:00+00:00")
    assert first == again and first["id"] == "s1"
    first["category"][0]["coding"][0]["code"] = "changed"  # callers may edit their copy
    assert to_diagnostic_report(interp)["category"][0]["coding"][0]["code"] == "RAD"

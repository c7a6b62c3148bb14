"""The signed report as FHIR: preliminary (AI draft + Provenance) → final → appended,
each validated by fhir.resources.R4B."""

from __future__ import annotations

import base64

from fhir.resources.R4B.device import Device
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.provenance import Provenance as FhirProvenance

from medlens.disclaimer import DISCLAIMER
from medlens.tasks.interpret.fhir import to_diagnostic_report
from medlens.tasks.interpret.result import (
    FindingScore,
    ImageFindingScores,
    Interpretation,
    ModelProvenance,
    Provenance,
    ReportSections,
)
from medlens.tasks.interpret.signoff import AddendumText, FindingReview, SignedReport


def _interp() -> Interpretation:
    gen = ModelProvenance(model_id="google/medgemma-4b-it", backend="transformers", source="hf",
                          revision="abc123", weights_hash="w", dtype="bf16", device="cpu")
    return Interpretation(
        study_id="s1", status="complete",
        report=ReportSections(findings="Small right effusion.", impression="Effusion.",
                              raw_text="...", parse_quality="structured"),
        finding_scores=[ImageFindingScores(image_index=0, label_set="cxr", scores=[
            FindingScore(label="Pleural Effusion", probability=0.8)])],
        provenance=Provenance(medlens_version="0.9.0", created_at="2026-11-28T05:00:00+00:00",
                              generator=gen))


def _signed(addenda: tuple[AddendumText, ...] = ()) -> SignedReport:
    return SignedReport(
        findings="No effusion. <script>x</script>", impression="Normal chest.", version=2,
        signer_id="u-rad", signer_name="Dr Rad", signed_at="2026-11-28T06:00:00.000000+00:00",
        sha256="ab" * 32, finding_reviews=(FindingReview("Pleural Effusion", "disagree", "none"),),
        addenda=addenda)


def _contained(fhir: dict, kind: str) -> list[dict]:
    return [r for r in fhir["contained"] if r["resourceType"] == kind]


def test_the_ai_draft_is_preliminary_with_a_provenance_naming_the_model():
    fhir = to_diagnostic_report(_interp())
    report = DiagnosticReport.model_validate(fhir)
    assert report.status == "preliminary" and report.resultsInterpreter is None
    (device,) = _contained(fhir, "Device")
    (prov,) = _contained(fhir, "Provenance")
    Device.model_validate(device)
    FhirProvenance.model_validate(prov)
    assert device["deviceName"][0]["name"] == "google/medgemma-4b-it"
    assert device["version"][0]["value"] == "abc123"
    assert prov["agent"][0]["who"] == {"reference": "#ai-model",
                                       "display": "google/medgemma-4b-it@abc123"}
    assert prov["agent"][0]["type"]["coding"][0]["code"] == "author"
    assert prov["target"] == [{"reference": "#"}]
    assert prov["recorded"] == "2026-11-28T05:00:00+00:00"


def test_a_signed_report_is_final_with_the_interpreter_and_the_signed_text():
    fhir = to_diagnostic_report(_interp(), signed=_signed())
    report = DiagnosticReport.model_validate(fhir)
    assert report.status == "final"
    (interpreter,) = report.resultsInterpreter
    assert interpreter.type == "Practitioner" and interpreter.display == "Dr Rad"
    assert interpreter.identifier.value == "u-rad"
    assert report.conclusion == "Normal chest."
    final = report.presentedForm[0].data.decode()
    assert "Findings: No effusion." in final and "Signed by Dr Rad" in final
    assert "Pleural Effusion: disagree (none)" in final and DISCLAIMER in final
    # The AI draft travels too, marked as what it is.
    assert "Small right effusion." in report.presentedForm[1].data.decode()
    assert "superseded" in report.presentedForm[1].title
    assert "&lt;script&gt;" in report.text.div and "<script>" not in report.text.div
    assert report.issued.isoformat().startswith("2026-11-28T06:00:00")
    (prov,) = _contained(fhir, "Provenance")
    assert [a["type"]["coding"][0]["code"] for a in prov["agent"]] == ["author", "verifier"]
    assert prov["recorded"] == "2026-11-28T06:00:00.000000+00:00"
    assert {"url": "https://medlens.local/fhir/StructureDefinition/signature-sha256",
            "valueString": "ab" * 32} in fhir["extension"]
    # The draft's resource is untouched by building the signed one.
    assert to_diagnostic_report(_interp())["status"] == "preliminary"


def test_addenda_make_it_appended():
    addendum = AddendumText(1, "Follow-up film advised.", "Dr Rad",
                            "2026-11-29T08:00:00.000000+00:00", "cd" * 32)
    fhir = to_diagnostic_report(_interp(), signed=_signed((addendum,)))
    report = DiagnosticReport.model_validate(fhir)
    assert report.status == "appended"
    text = base64.b64decode(fhir["presentedForm"][0]["data"]).decode()
    assert "Addendum 1 by Dr Rad on 2026-11-29T08:00:00" in text
    assert "Follow-up film advised." in text
    assert report.issued.isoformat().startswith("2026-11-29T08:00:00")

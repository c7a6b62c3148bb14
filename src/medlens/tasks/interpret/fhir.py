"""Interpretation → FHIR R4 DiagnosticReport: one builder for the API and the CLI.

Status is `preliminary` for the AI draft (awaiting a clinician; a contained Provenance
names the model that wrote it), `final` once a radiologist signed it and `appended` after
addenda (signoff.py); the resource is tagged AI-assisted (v3 ObservationValue AIAST),
finding scores and urgency travel as contained Observations, and the disclaimer is both
in the narrative and in an extension so it survives whichever part a receiving system
shows. Nothing here is random or read from the clock: the same interpretation always
gives the same resource.
"""

from __future__ import annotations

import base64
import copy
import html
from typing import Any

from medlens.disclaimer import DISCLAIMER
from medlens.tasks.interpret.result import Interpretation
from medlens.tasks.interpret.signoff import SignedReport, apply_signoff, provenance_resources

EXT_BASE = "https://medlens.local/fhir/StructureDefinition"
LOINC = "http://loinc.org"
_SECTIONS = (
    ("technique", "Technique"),
    ("comparison", "Comparison"),
    ("findings", "Findings"),
    ("impression", "Impression"),
)
_AI_TAG = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "AIAST",
    "display": "Artificial Intelligence asserted",
}
_RADIOLOGY = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
            "code": "RAD",
            "display": "Radiology",
        }
    ]
}
_CODE = {
    "coding": [{"system": LOINC, "code": "18748-4", "display": "Diagnostic imaging study"}],
    "text": "Chest X-ray: AI-generated draft report",
}


def report_text(interp: Interpretation) -> str:
    """The plain-text report: sections, refusal reason, disclaimer, test-model label."""
    report = interp.report
    parts = []
    if report is not None:
        for key, title in _SECTIONS:
            value = getattr(report, key)
            if value:
                parts.append(f"{title}: {value}")
        if not parts and report.raw_text:
            parts.append(report.raw_text)
    if interp.status == "refused":
        reasons = "; ".join(g.reason for g in interp.gate if g.reason)
        parts.append(f"No report: the image was refused ({reasons or 'not a chest X-ray'}).")
    parts.append(interp.disclaimer or DISCLAIMER)
    if interp.test_model_label:
        parts.append(interp.test_model_label)
    return "\n\n".join(parts)


def _observation(idx: int, label: str, value: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"obs{idx}",
        "status": "preliminary",
        "code": {"text": label},
        **value,
    }


def observations(interp: Interpretation) -> list[dict[str, Any]]:
    """Finding scores (one per label and image), then the urgency, as Observations."""
    out: list[dict[str, Any]] = []
    for block in interp.finding_scores:
        for score in block.scores:
            quantity = {
                "value": round(float(score.probability), 4),
                "unit": "probability",
                "system": "http://unitsofmeasure.org",
                "code": "1",
            }
            label = f"{score.label} (AI score, image {block.image_index + 1})"
            out.append(_observation(len(out) + 1, label, {"valueQuantity": quantity}))
    if interp.urgency is not None:
        level = {"valueCodeableConcept": {"text": interp.urgency.level}}
        out.append(_observation(len(out) + 1, "Urgency (AI triage suggestion)", level))
    from medlens.tasks.interpret.fhir_findings import finding_observations

    out += finding_observations(interp, len(out) + 1)  # boxes (bodySite) and changes
    return out


def extensions(interp: Interpretation) -> list[dict[str, Any]]:
    """The disclaimer, and which model and prompt wrote the draft."""
    out: list[dict[str, Any]] = [{"url": f"{EXT_BASE}/ai-disclaimer", "valueString": DISCLAIMER}]
    generator = interp.provenance.generator
    if generator is not None:
        out.append(
            {
                "url": f"{EXT_BASE}/ai-model",
                "valueString": f"{generator.model_id}@{generator.revision}",
            }
        )
    prompt = interp.provenance.prompt
    if prompt is not None:
        out.append(
            {"url": f"{EXT_BASE}/ai-prompt", "valueString": f"{prompt.name} v{prompt.version}"}
        )
    return out


def to_diagnostic_report(
    interp: Interpretation,
    *,
    study_created: str | None = None,
    signed: SignedReport | None = None,
) -> dict[str, Any]:
    """The DiagnosticReport as JSON-ready dict; `study_created` becomes effectiveDateTime;
    `signed` (the radiologist's signed report) makes it `final`/`appended`."""
    text = report_text(interp)
    narrative = "".join(f"<p>{html.escape(p)}</p>" for p in text.split("\n\n"))
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": interp.study_id[:64],
        "meta": {"tag": [copy.deepcopy(_AI_TAG)]},
        "text": {
            "status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{narrative}</div>',
        },
        "extension": extensions(interp),
        "identifier": [{"system": "urn:medlens:study", "value": interp.study_id}],
        "status": "preliminary",
        "category": [copy.deepcopy(_RADIOLOGY)],
        "code": copy.deepcopy(_CODE),
        "presentedForm": [
            {
                "contentType": "text/plain; charset=utf-8",
                "language": interp.language,
                "data": base64.b64encode(text.encode()).decode(),
                "title": "AI-generated draft report (preliminary)",
            }
        ],
    }
    if interp.provenance.created_at:
        report["issued"] = interp.provenance.created_at
    if study_created:
        report["effectiveDateTime"] = study_created
    impression = interp.report.impression if interp.report is not None else None
    report["conclusion"] = f"{impression or 'See report.'} ({DISCLAIMER})"
    contained = observations(interp)
    if contained:
        report["result"] = [{"reference": f"#{obs['id']}"} for obs in contained]
    contained += provenance_resources(interp)
    if contained:
        report["contained"] = contained
    return apply_signoff(report, interp, signed) if signed is not None else report

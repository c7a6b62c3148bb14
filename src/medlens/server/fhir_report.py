"""Interpretation (its JSON dict) → FHIR R4 DiagnosticReport.

Status is always `preliminary` (an AI draft awaiting a clinician), the resource is tagged
AI-assisted (v3 ObservationValue AIAST), finding scores and urgency travel as contained
Observations, and the disclaimer is both in the narrative and in an extension so it
survives whichever part a receiving system shows.
"""

from __future__ import annotations

import base64
import html
from typing import Any

from medlens.disclaimer import DISCLAIMER

EXT_BASE = "https://medlens.local/fhir/StructureDefinition"
LOINC = "http://loinc.org"


def _report_text(interp: dict[str, Any]) -> str:
    report = interp.get("report") or {}
    parts = []
    for key, title in (
        ("technique", "Technique"),
        ("comparison", "Comparison"),
        ("findings", "Findings"),
        ("impression", "Impression"),
    ):
        if report.get(key):
            parts.append(f"{title}: {report[key]}")
    if not parts and report.get("raw_text"):
        parts.append(report["raw_text"])
    if interp.get("status") == "refused":
        reasons = "; ".join(g.get("reason", "") for g in interp.get("gate", []) if g.get("reason"))
        parts.append(f"No report: the image was refused ({reasons or 'not a chest X-ray'}).")
    parts.append(interp.get("disclaimer") or DISCLAIMER)
    if interp.get("test_model_label"):
        parts.append(interp["test_model_label"])
    return "\n\n".join(parts)


def _observation(idx: int, label: str, value: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"obs{idx}",
        "status": "preliminary",
        "code": {"text": label},
        **value,
    }


def to_diagnostic_report(interp: dict[str, Any], *, study_created: str | None = None) -> dict:
    study_id = str(interp.get("study_id", "unknown"))
    text = _report_text(interp)
    contained: list[dict[str, Any]] = []
    for block in interp.get("finding_scores", []):
        for score in block.get("scores", []):
            contained.append(
                _observation(
                    len(contained) + 1,
                    f"{score['label']} (AI score, image {block.get('image_index', 0) + 1})",
                    {
                        "valueQuantity": {
                            "value": round(float(score["probability"]), 4),
                            "unit": "probability",
                            "system": "http://unitsofmeasure.org",
                            "code": "1",
                        }
                    },
                )
            )
    urgency = interp.get("urgency")
    if urgency:
        contained.append(
            _observation(
                len(contained) + 1,
                "Urgency (AI triage suggestion)",
                {"valueCodeableConcept": {"text": urgency.get("level", "unknown")}},
            )
        )

    provenance = interp.get("provenance") or {}
    generator = provenance.get("generator") or {}
    extensions = [{"url": f"{EXT_BASE}/ai-disclaimer", "valueString": DISCLAIMER}]
    if generator:
        extensions.append(
            {
                "url": f"{EXT_BASE}/ai-model",
                "valueString": f"{generator.get('model_id')}@{generator.get('revision')}",
            }
        )
    prompt = provenance.get("prompt") or {}
    if prompt:
        extensions.append(
            {
                "url": f"{EXT_BASE}/ai-prompt",
                "valueString": f"{prompt.get('name')} v{prompt.get('version')}",
            }
        )

    narrative = "".join(f"<p>{html.escape(p)}</p>" for p in text.split("\n\n"))
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": study_id[:64],
        "meta": {
            "tag": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                    "code": "AIAST",
                    "display": "Artificial Intelligence asserted",
                }
            ]
        },
        "text": {
            "status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{narrative}</div>',
        },
        "extension": extensions,
        "identifier": [{"system": "urn:medlens:study", "value": study_id}],
        "status": "preliminary",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
                        "code": "RAD",
                        "display": "Radiology",
                    }
                ]
            }
        ],
        "code": {
            "coding": [{"system": LOINC, "code": "18748-4", "display": "Diagnostic imaging study"}],
            "text": "Chest X-ray: AI-generated draft report",
        },
        "presentedForm": [
            {
                "contentType": "text/plain; charset=utf-8",
                "language": interp.get("language", "en"),
                "data": base64.b64encode(text.encode()).decode(),
                "title": "AI-generated draft report (preliminary)",
            }
        ],
    }
    if provenance.get("created_at"):
        report["issued"] = provenance["created_at"]
    if study_created:
        report["effectiveDateTime"] = study_created
    impression = (interp.get("report") or {}).get("impression")
    report["conclusion"] = f"{impression or 'See report.'} ({DISCLAIMER})"
    if contained:
        report["contained"] = contained
        report["result"] = [{"reference": f"#{obs['id']}"} for obs in contained]
    return report

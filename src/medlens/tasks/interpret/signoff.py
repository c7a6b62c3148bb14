"""A radiologist-signed report as plain data, its text, and its FHIR parts.

The server maps its stored review (versions, signature, addenda) into `SignedReport`;
this module turns it into the text of the final report and into the changes that make
the AI draft's DiagnosticReport `final` (or `appended` once addenda exist). It also
builds the contained Provenance that names the model which wrote the draft.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from medlens.disclaimer import DISCLAIMER
from medlens.tasks.interpret.result import Interpretation

EXT_BASE = "https://medlens.local/fhir/StructureDefinition"
USER_SYSTEM = "urn:medlens:user"
_PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"


@dataclass(frozen=True)
class FindingReview:
    label: str
    verdict: str | None  # agree | disagree | None (not reviewed)
    comment: str = ""


@dataclass(frozen=True)
class AddendumText:
    seq: int
    text: str
    author_name: str
    created_at: str
    sha256: str


@dataclass(frozen=True)
class SignedReport:
    findings: str
    impression: str
    version: int
    signer_id: str | None
    signer_name: str
    signed_at: str
    sha256: str
    finding_reviews: tuple[FindingReview, ...] = ()
    addenda: tuple[AddendumText, ...] = ()


def review_line(reviews: tuple[FindingReview, ...]) -> str:
    marks = []
    for r in reviews:
        if r.verdict is None and not r.comment:
            continue
        note = f" ({r.comment})" if r.comment else ""
        marks.append(f"{r.label}: {r.verdict or 'no verdict'}{note}")
    return "; ".join(marks)


def signed_text(signed: SignedReport, *, disclaimer: bool = True) -> str:
    """The final report as plain text: sections, AI-finding review, signature, addenda."""
    parts = [f"Findings: {signed.findings or '-'}", f"Impression: {signed.impression or '-'}"]
    reviewed = review_line(signed.finding_reviews)
    if reviewed:
        parts.append(f"Review of the AI findings: {reviewed}")
    parts.append(
        f"Signed by {signed.signer_name} on {signed.signed_at} "
        f"(version {signed.version}; SHA-256 {signed.sha256})"
    )
    for a in signed.addenda:
        parts.append(f"Addendum {a.seq} by {a.author_name} on {a.created_at}: {a.text}")
    if disclaimer:
        parts.append(DISCLAIMER)
    return "\n\n".join(parts)


def _practitioner(signed: SignedReport) -> dict[str, Any]:
    ref: dict[str, Any] = {"type": "Practitioner", "display": signed.signer_name}
    if signed.signer_id:
        ref["identifier"] = {"system": USER_SYSTEM, "value": signed.signer_id}
    return ref


def _agent(code: str, who: dict[str, Any]) -> dict[str, Any]:
    return {"type": {"coding": [{"system": _PARTICIPANT, "code": code}]}, "who": who}


def provenance_resources(
    interp: Interpretation, signed: SignedReport | None = None
) -> list[dict[str, Any]]:
    """Contained Device (the report model) and Provenance (model, version, and the signer)."""
    prov = interp.provenance
    recorded = signed.signed_at if signed is not None else prov.created_at
    if not recorded:
        return []
    out: list[dict[str, Any]] = []
    agents = []
    gen = prov.generator
    if gen is not None:
        out.append(
            {
                "resourceType": "Device",
                "id": "ai-model",
                "deviceName": [{"name": gen.model_id, "type": "model-name"}],
                "version": [{"value": gen.revision or "unknown"}],
                "type": {"text": "AI report generator (MedLens " + prov.medlens_version + ")"},
            }
        )
        who = {"reference": "#ai-model", "display": f"{gen.model_id}@{gen.revision}"}
        agents.append(_agent("author", who))
    else:
        agents.append(_agent("assembler", {"display": f"MedLens {prov.medlens_version}"}))
    if signed is not None:
        agents.append(_agent("verifier", _practitioner(signed)))
    out.append(
        {
            "resourceType": "Provenance",
            "id": "provenance",
            "target": [{"reference": "#"}],  # "#": the DiagnosticReport containing it
            "recorded": recorded,
            "agent": agents,
        }
    )
    return out


def apply_signoff(
    report: dict[str, Any], interp: Interpretation, signed: SignedReport
) -> dict[str, Any]:
    """Turn the draft's DiagnosticReport into the signed one (in place; also returned)."""
    text = signed_text(signed)
    narrative = "".join(f"<p>{html.escape(p)}</p>" for p in text.split("\n\n"))
    report["text"]["div"] = f'<div xmlns="http://www.w3.org/1999/xhtml">{narrative}</div>'
    report["status"] = "appended" if signed.addenda else "final"
    report["code"]["text"] = "Chest X-ray report (AI-assisted draft, signed by a radiologist)"
    report["resultsInterpreter"] = [_practitioner(signed)]
    report["issued"] = signed.addenda[-1].created_at if signed.addenda else signed.signed_at
    report["conclusion"] = signed.impression or "See report."
    seal = {"url": f"{EXT_BASE}/signature-sha256", "valueString": signed.sha256}
    report["extension"].append(seal)
    draft = report["presentedForm"][0]
    draft["title"] = "AI-generated draft (preliminary, superseded by the signed report)"
    final = {
        "contentType": "text/plain; charset=utf-8",
        "language": interp.language,
        "data": _b64(text),
        "title": "Signed report" + (" with addenda" if signed.addenda else " (final)"),
    }
    report["presentedForm"] = [final, draft]
    contained = [r for r in report.get("contained", []) if r["resourceType"] == "Observation"]
    report["contained"] = contained + provenance_resources(interp, signed)
    return report


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()

"""The FHIR side of results: one R4 transaction Bundle, POSTed to `settings.fhir_url`.

Built on the one FHIR builder (medlens.tasks.interpret.fhir): its DiagnosticReport and
Observations are taken as they are and turned from contained resources into Bundle
entries with `urn:uuid:` references. Added here: the ImagingStudy identified by
`urn:dicom:uid` = `urn:oid:<StudyInstanceUID>` plus the accession number, the Patient by
its original id, a Device for MedLens and the model (`Observation.device`; R4 does not
allow a Device as DiagnosticReport.performer) and a Provenance whose agent is that
Device. Patient and ImagingStudy are conditional creates, so a second push does not
duplicate them. R4B models (fhir.resources.R4B) validate the Bundle before it leaves.
"""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

from medlens.integrations.sr import device_name, finding_code
from medlens.tasks.interpret.fhir import observations, to_diagnostic_report
from medlens.tasks.interpret.result import Interpretation

_NS = uuid.UUID("5b0c7f3e-2f5e-4d59-9a1a-6d2f3f2b8c10")
DICOM_UID = "urn:dicom:uid"


def _uuid(*parts: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NS, '|'.join(parts))}"


def _entry(full_url: str, resource: dict[str, Any], if_none_exist: str | None = None) -> dict:
    request = {"method": "POST", "url": resource["resourceType"]}
    if if_none_exist:
        request["ifNoneExist"] = if_none_exist
    return {"fullUrl": full_url, "resource": resource, "request": request}


def _coded(obs: dict[str, Any], label: str | None) -> dict[str, Any]:
    if label is None:
        return obs
    code = finding_code(label)
    coding = {"system": code.fhir_system, "code": code.code, "display": code.meaning}
    obs["code"]["coding"] = [coding]
    return obs


def _labels(interp: Interpretation) -> list[str | None]:
    """The finding label of each builder Observation, in the builder's order."""
    labels: list[str | None] = [s.label for b in interp.finding_scores for s in b.scores]
    return labels + [None] * (1 if interp.urgency is not None else 0)


def bundle(interp: Interpretation, identity: dict[str, Any]) -> dict[str, Any]:
    """The transaction Bundle for one interpretation of an integrated study."""
    study_uid = str(identity["StudyInstanceUID"])
    key = (study_uid, interp.study_id, interp.provenance.created_at or "")
    ids = {n: _uuid(*key, n) for n in ("patient", "study", "device", "report", "prov")}
    patient = {"resourceType": "Patient", "identifier": [_patient_identifier(identity)]}
    study_ident = [{"system": DICOM_UID, "value": f"urn:oid:{study_uid}"}]
    if identity.get("AccessionNumber"):
        study_ident.append(_accession(identity["AccessionNumber"]))
    imaging = {
        "resourceType": "ImagingStudy",
        "identifier": study_ident,
        "status": "available",
        "subject": {"reference": ids["patient"]},
    }
    gen = interp.provenance.generator
    device = {
        "resourceType": "Device",
        "deviceName": [{"name": device_name(interp), "type": "model-name"}],
        "manufacturer": "MedLens",
        "version": [{"value": f"{gen.model_id}@{gen.revision}"}] if gen else [],
    }
    obs_entries = []
    for n, (obs, label) in enumerate(zip(observations(interp), _labels(interp), strict=True)):
        obs = _coded(copy.deepcopy(obs), label)
        obs.pop("id", None)
        obs["subject"] = {"reference": ids["patient"]}
        obs["device"] = {"reference": ids["device"]}
        obs["derivedFrom"] = [{"reference": ids["study"]}]
        obs_entries.append(_entry(_uuid(*key, f"obs{n}"), obs))
    report = to_diagnostic_report(interp)
    report.pop("contained", None)
    report.pop("id", None)
    report["subject"] = {"reference": ids["patient"]}
    report["imagingStudy"] = [{"reference": ids["study"]}]
    report["result"] = [{"reference": e["fullUrl"]} for e in obs_entries]
    if not report["result"]:
        report.pop("result")
    report["conclusionCode"] = _conclusion_codes(interp)
    provenance = {
        "resourceType": "Provenance",
        "target": [{"reference": ids["report"]}, *report.get("result", [])],
        "recorded": interp.provenance.created_at or "1970-01-01T00:00:00Z",
        "agent": [{"type": _AUTHOR, "who": {"reference": ids["device"]}}],
    }
    entries = [
        _entry(ids["patient"], patient, _search(patient["identifier"][0])),
        _entry(ids["study"], imaging, _search(study_ident[0])),
        _entry(ids["device"], device),
        *obs_entries,
        _entry(ids["report"], report),
        _entry(ids["prov"], provenance),
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


_AUTHOR = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
            "code": "author",
        }
    ]
}


def _search(identifier: dict[str, str]) -> str:
    return f"identifier={identifier['system']}|{identifier['value']}"


def _patient_identifier(identity: dict[str, Any]) -> dict[str, str]:
    issuer = identity.get("IssuerOfPatientID")
    system = f"urn:medlens:issuer:{issuer}" if issuer else "urn:medlens:pacs-patient-id"
    return {"system": system, "value": str(identity.get("PatientID") or "unknown")}


def _accession(value: str) -> dict[str, Any]:
    acsn = {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}
    return {"type": {"coding": [acsn]}, "system": "urn:medlens:accession", "value": value}


def _conclusion_codes(interp: Interpretation) -> list[dict[str, Any]]:
    """Findings the scores flag (at the SR's threshold), coded like the SR."""
    from medlens.integrations.sr import threshold

    cut = threshold(interp)
    out = []
    for block in interp.finding_scores[:1]:
        for s in block.scores:
            if s.probability >= cut:
                c = finding_code(s.label)
                out.append(
                    {"coding": [{"system": c.fhir_system, "code": c.code, "display": c.meaning}]}
                )
    return out or [{"text": "No finding above the AI threshold"}]


def validate(doc: dict[str, Any]) -> Any:
    """The Bundle as fhir.resources R4B models (raises on a structural error)."""
    from fhir.resources.R4B.bundle import Bundle

    return Bundle.model_validate(doc)


def post_bundle(settings: Any, doc: dict[str, Any], *, timeout: float = 30.0) -> list[str]:
    """POST the transaction; the response entries' statuses (IntegrationError on refusal,
    PacsUnavailable when the server cannot be reached)."""
    import requests

    from medlens.integrations.errors import IntegrationError, NotConfigured, PacsUnavailable
    from medlens.integrations.settings import http_session

    if not settings.fhir_url:
        raise NotConfigured("No FHIR server is configured (MEDLENS_FHIR_URL).")
    session = http_session(settings, token_field="fhir")
    headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
    try:
        resp = session.post(
            settings.fhir_url.rstrip("/"), data=json.dumps(doc), headers=headers, timeout=timeout
        )
    except requests.RequestException as exc:
        raise PacsUnavailable(f"FHIR server {settings.fhir_url} unreachable: {exc}") from exc
    if resp.status_code >= 300:
        raise IntegrationError(f"FHIR server refused the Bundle: HTTP {resp.status_code}.")
    try:
        answer = resp.json()
    except ValueError as exc:
        raise IntegrationError("FHIR server answered with something that is not JSON.") from exc
    return [str(e.get("response", {}).get("status", "")) for e in answer.get("entry", [])]

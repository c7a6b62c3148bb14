"""The narrative SR: the draft report as TID 2000 (Basic Diagnostic Imaging Report).

Title LOINC 18748-4; a Findings container (DCM 121070) with the Finding TEXT (121071),
INFERRED FROM an IMAGE reference to each source; an Impressions container (121072) with
the Impression TEXT (121073) and the disclaimer as a second Impression, so a viewer that
shows only impressions still shows it. Basic Text SR or Comprehensive SR per setting
(`sr_kind`). There is no public Basic Text SR class in highdicom 0.28: the private `_SR`
base with the Basic Text SOP class is used, and the version is pinned (constraints.txt).
"""

from __future__ import annotations

from typing import Any, Literal

from medlens.disclaimer import DISCLAIMER
from medlens.integrations import sr as S
from medlens.tasks.interpret.result import Interpretation

SrKind = Literal["basic", "comprehensive"]
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
MAX_TEXT = 60000  # UT allows more; PACS viewers do not


def texts(interp: Interpretation) -> tuple[str, str]:
    """(findings, impression) as the report says them; a refusal says why."""
    report = interp.report
    if interp.status == "refused" or report is None:
        reasons = "; ".join(g.reason for g in interp.gate if g.reason)
        refusal = f"No report: the image was refused ({reasons or 'not a chest X-ray'})."
        return refusal, "No AI impression."
    findings = report.findings or report.raw_text or "No findings text."
    return findings, report.impression or "See findings."


def _content(interp: Interpretation, sources: list[Any]) -> Any:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    findings_text, impression_text = texts(interp)
    finding = hd.sr.TextContentItem(
        name=codes.DCM.Finding,
        value=findings_text[:MAX_TEXT],
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    finding.ContentSequence = hd.sr.ContentSequence(
        [
            hd.sr.ImageContentItem(
                name=codes.DCM.SourceOfMeasurement,
                referenced_sop_class_uid=str(src.SOPClassUID),
                referenced_sop_instance_uid=str(src.SOPInstanceUID),
                relationship_type=hd.sr.RelationshipTypeValues.INFERRED_FROM,
            )
            for src in sources
        ]
    )
    findings = hd.sr.ContainerContentItem(
        name=codes.DCM.Findings, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )
    findings.ContentSequence = hd.sr.ContentSequence([finding])
    impressions = hd.sr.ContainerContentItem(
        name=codes.DCM.Impressions, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )
    notes = [impression_text, DISCLAIMER]
    if interp.test_model_label:
        notes.append(interp.test_model_label)
    impressions.ContentSequence = hd.sr.ContentSequence(
        [
            hd.sr.TextContentItem(
                name=codes.DCM.Impression,
                value=text[:MAX_TEXT],
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            )
            for text in notes
        ]
    )
    root = hd.sr.ContainerContentItem(name=codes.LN.DiagnosticImagingReport, template_id="2000")
    language = hd.sr.LanguageOfContentItemAndDescendants(
        hd.sr.CodedConcept(_lang(interp.language), "RFC5646", _lang(interp.language))
    )
    root.ContentSequence = hd.sr.ContentSequence(
        [*language, *S.observation_context(interp), findings, impressions]
    )
    return root


def _lang(code: str) -> str:
    return (code or "en").split("-")[0].lower()[:8] or "en"


def narrative_sr(interp: Interpretation, sources: list[Any], kind: SrKind = "basic") -> Any:
    """The TID 2000 report as Basic Text SR (default) or Comprehensive SR."""
    import highdicom as hd

    S.check_sources(sources)
    ev = S.evidence(sources)
    study_uid = str(ev[0].StudyInstanceUID)
    common = {
        "evidence": ev,
        "content": _content(interp, ev),
        "series_instance_uid": S.derived_uid(study_uid, interp.study_id, f"narrative-{kind}"),
        "series_number": S.AI_SERIES_NUMBERS["narrative"],
        "sop_instance_uid": S.derived_uid(study_uid, interp.study_id, S.created(interp), kind),
        "instance_number": 1,
        "manufacturer": S.MANUFACTURER,
        "is_complete": True,
        "is_final": False,
        "is_verified": False,
    }
    if kind == "comprehensive":
        ds = hd.sr.ComprehensiveSR(**common)
    elif kind == "basic":
        from highdicom.sr.sop import _SR

        ds = _SR(sop_class_uid=BASIC_TEXT_SR, **common)
    else:
        from medlens.errors import ConfigError

        raise ConfigError(f"Unknown SR kind {kind!r}; use basic or comprehensive.")
    return S.finalize(ds, "report")

"""The findings SR: an Interpretation as DICOM Comprehensive SR, TID 1500 (highdicom).

One `MeasurementsAndQualitativeEvaluations` group per scored finding: the finding as a
coded `finding_type` (finding_codes.toml), its score as NUM (UCUM "1"), Present/Absent
against the cross-check's threshold, the algorithm (model id, revision, prompt version)
and the source image; then one TID 1410 planar-ROI group per grounding box (sr_regions:
a closed POLYLINE SCOORD on the source image). The observer is a Device naming MedLens
and the model. TID 1500 is
what the IHE AI Results profile builds on.

`sources` are the ORIGINAL headers of the source instances (the file's own header, or the
protected identity table for integrated studies), never the de-identified copies: the
SR inherits patient and study from them, so the PACS files it in the same study.
UIDs of the new objects are derived from the source study and the interpretation, so
sending the same result twice sends the same instance (a PACS keeps one).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from medlens import __version__ as MEDLENS_VERSION
from medlens.disclaimer import DISCLAIMER
from medlens.tasks.interpret.result import Interpretation

MANUFACTURER = "MedLens"
DEFAULT_THRESHOLD = 0.5
AI_SERIES_NUMBERS = {"findings": 9901, "narrative": 9902, "gsps": 9903, "sc": 9904}
# DICOM keywords an outgoing object takes from the source (the SR inherits them).
SOURCE_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
    "StudyID", "StudyDate", "StudyTime", "AccessionNumber", "ReferringPhysicianName",
    "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "Modality",
)  # fmt: skip


@dataclass(frozen=True)
class Code:
    scheme: str
    code: str
    meaning: str

    def hd(self) -> Any:
        import highdicom as hd

        return hd.sr.CodedConcept(self.code, self.scheme, self.meaning)

    @property
    def fhir_system(self) -> str:
        return "http://snomed.info/sct" if self.scheme == "SCT" else "urn:medlens:finding"


@lru_cache(maxsize=1)
def _codes() -> dict[str, Any]:
    text = resources.files("medlens.integrations").joinpath("finding_codes.toml").read_text()
    return tomllib.loads(text)


def finding_code(label: str) -> Code:
    """The code for a finding label; a private 99MEDLENS code for labels not in the table."""
    entry = _codes()["labels"].get(label)
    if entry is not None:
        return Code(entry["scheme"], entry["code"], entry["meaning"])
    slug = re.sub(r"[^A-Z0-9]+", "-", label.upper()).strip("-")[:16] or "FINDING"
    return Code("99MEDLENS", slug, label[:64])


def concept(name: str) -> Code:
    entry = _codes()["concepts"][name]
    return Code(entry["scheme"], entry["code"], entry["meaning"])


def derived_uid(*parts: str) -> str:
    """A 2.25 UID from the given parts: the same result always gets the same UID."""
    import hashlib

    digest = hashlib.sha256("\x1f".join(["medlens-result", *parts]).encode()).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def check_sources(sources: list[Any]) -> None:
    """Every source has the identifiers an outgoing object must carry (clear error if not)."""
    from medlens.errors import InvalidImage

    if not sources:
        raise InvalidImage("No DICOM source instance: SR objects need the source study.")
    for ds in sources:
        missing = [k for k in ("StudyInstanceUID", "SOPInstanceUID", "SOPClassUID") if k not in ds]
        if missing:
            raise InvalidImage(f"The DICOM source lacks {', '.join(missing)}: cannot reference it.")
    studies = {str(ds.StudyInstanceUID) for ds in sources}
    if len(studies) > 1:
        raise InvalidImage("The source instances belong to more than one study.")


def evidence(sources: list[Any]) -> list[Any]:
    """Header-only copies with every attribute highdicom reads (empty when absent)."""
    from pydicom import Dataset

    out = []
    for src in sources:
        ds = Dataset()
        for key in SOURCE_KEYWORDS:
            setattr(ds, key, src.get(key, "") if key in src else "")
        for key in ("Rows", "Columns", "PhotometricInterpretation", "SpecificCharacterSet"):
            if key in src:
                setattr(ds, key, src.get(key))
        out.append(ds)
    return out


def threshold(interp: Interpretation) -> float:
    cc = interp.cross_check
    return cc.high_threshold if cc is not None and cc.high_threshold > 0 else DEFAULT_THRESHOLD


def device_name(interp: Interpretation) -> str:
    gen = interp.provenance.generator
    return f"MedLens {MEDLENS_VERSION}" + (f" / {gen.model_id}" if gen is not None else "")


def observation_context(interp: Interpretation) -> Any:
    """Observer context: a Device (DCM 121007) naming MedLens and the model."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    gen = interp.provenance.generator or interp.provenance.encoder
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=derived_uid("device", MEDLENS_VERSION, gen.model_id if gen else ""),
        name=device_name(interp)[:64],
        manufacturer_name=MANUFACTURER,
        model_name=(gen.model_id if gen else "MedLens")[:64],
        serial_number=(gen.revision if gen else MEDLENS_VERSION)[:64] or "unknown",
    )
    return hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device, observer_identifying_attributes=device
        )
    )


def algorithm(interp: Interpretation, cut: float) -> Any:
    """AlgorithmIdentification: the scoring model, its revision, the prompt and threshold."""
    import highdicom as hd

    prov = interp.provenance
    model = prov.encoder or prov.generator
    params = [f"threshold {cut:g}", f"MedLens {MEDLENS_VERSION}"]
    if prov.prompt is not None:
        params.append(f"prompt {prov.prompt.name} v{prov.prompt.version}")
    if prov.generator is not None and prov.generator is not model:
        params.append(f"report model {prov.generator.model_id}@{prov.generator.revision}")
    return hd.sr.AlgorithmIdentification(
        name=(model.model_id if model else "MedLens")[:64],
        version=(model.revision if model else MEDLENS_VERSION)[:64] or "unknown",
        parameters=params,
    )


def _groups(interp: Interpretation, sources: list[Any]) -> list[Any]:
    import highdicom as hd

    cut = threshold(interp)
    algo = algorithm(interp, cut)
    unit = hd.sr.CodedConcept("1", "UCUM", "no units")
    prob = concept("probability").hd()
    groups = []
    for block in interp.finding_scores:
        src = sources[min(block.image_index, len(sources) - 1)]
        for score in block.scores:
            code = finding_code(score.label)
            state = concept("present" if score.probability >= cut else "absent")
            uid = derived_uid(interp.study_id, str(block.image_index), score.label)
            groups.append(
                hd.sr.MeasurementsAndQualitativeEvaluations(
                    tracking_identifier=hd.sr.TrackingIdentifier(uid=uid, identifier=score.label),
                    finding_type=code.hd(),
                    algorithm_id=algo,
                    source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(src)],
                    measurements=[
                        hd.sr.Measurement(
                            name=prob,
                            value=round(float(score.probability), 4),
                            unit=unit,
                            algorithm_id=algo,
                        )
                    ],
                    qualitative_evaluations=[
                        hd.sr.QualitativeEvaluation(name=code.hd(), value=state.hd())
                    ],
                )
            )
    return groups


def finalize(ds: Any, kind: str) -> Any:
    """Attributes every MedLens SR carries: an 'AI' series, draft flags, the disclaimer."""
    ds.SeriesDescription = f"AI draft ({kind}) - not verified"[:64]
    ds.PreliminaryFlag = "PRELIMINARY"
    ds.VerificationFlag = "UNVERIFIED"
    ds.CompletionFlag = "COMPLETE"
    ds.ManufacturerModelName = "MedLens"
    ds.SoftwareVersions = MEDLENS_VERSION
    # the disclaimer travels in the header too, where a viewer shows no content tree
    ds.CompletionFlagDescription = DISCLAIMER[:64]
    return ds


def findings_sr(interp: Interpretation, sources: list[Any]) -> Any:
    """The TID 1500 Comprehensive SR for the interpretation's finding scores and boxes."""
    import highdicom as hd

    from medlens.integrations.sr_regions import region_groups

    check_sources(sources)
    ev = evidence(sources)
    if not interp.finding_scores and not interp.regions:
        from medlens.errors import InvalidImage

        raise InvalidImage("No finding scores or boxes: nothing for a findings SR.")
    report = hd.sr.MeasurementReport(
        observation_context=observation_context(interp),
        procedure_reported=concept("procedure").hd(),
        # TID 1501 per scored finding, then TID 1410 per grounding box (sr_regions)
        imaging_measurements=_groups(interp, ev) + region_groups(interp, ev),
    )
    study_uid = str(ev[0].StudyInstanceUID)
    sr = hd.sr.ComprehensiveSR(
        evidence=ev,
        content=report[0],
        series_instance_uid=derived_uid(study_uid, interp.study_id, "findings-series"),
        series_number=AI_SERIES_NUMBERS["findings"],
        sop_instance_uid=derived_uid(study_uid, interp.study_id, created(interp), "findings"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,
        is_verified=False,
    )
    return finalize(sr, "findings")


def created(interp: Interpretation) -> str:
    return interp.provenance.created_at or ""

"""The original identity of an integrated study: captured at intake, kept apart, used
only to file results back in the right place.

MedLens interprets de-identified pixels, but an object sent back to a PACS (an SR, a
presentation state, a FHIR report) must carry the study's original patient and study
identifiers and UIDs, or the PACS files it under the wrong patient or study. So the
original identifying header of each pulled/received study is captured here, before
de-identification, and kept in its own table (`store.put_study_identity`), never in
the normal store, never in a response, a page or a log.

Shape (DICOM keywords, values as DICOM strings):
    {"PatientID": ..., "PatientName": ..., "StudyInstanceUID": ..., "AccessionNumber": ...,
     "instances": [{"SOPInstanceUID": ..., "SeriesInstanceUID": ..., "position": 1, ...}]}
`position` is the MedLens image position (1-based) the instance became.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from medlens.errors import DataError

if TYPE_CHECKING:
    from pydicom import Dataset

# Study level: what a PACS needs to file an object in the same patient and study.
STUDY_KEYS: tuple[str, ...] = (
    "PatientID",
    "IssuerOfPatientID",
    "OtherPatientIDs",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "StudyInstanceUID",
    "StudyID",
    "AccessionNumber",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "ReferringPhysicianName",
    "InstitutionName",
)
# Instance level: what an evidence sequence, a source-image reference or a presentation
# state needs to point at the original image.
INSTANCE_KEYS: tuple[str, ...] = (
    "SOPInstanceUID",
    "SOPClassUID",
    "SeriesInstanceUID",
    "SeriesNumber",
    "SeriesDate",
    "SeriesTime",
    "InstanceNumber",
    "Modality",
    "BodyPartExamined",
    "ViewPosition",
    "Laterality",
    "ImageLaterality",
    "PatientOrientation",
    "FrameOfReferenceUID",
    "PhotometricInterpretation",
    "Rows",
    "Columns",
)
_REQUIRED = ("StudyInstanceUID",)
_REQUIRED_INSTANCE = ("SOPInstanceUID", "SOPClassUID", "SeriesInstanceUID")


def _value(ds: Dataset, keyword: str) -> Any:
    elem = ds.data_element(keyword) if keyword in ds else None
    if elem is None or elem.value is None or elem.value == "":
        return None
    value = elem.value
    if elem.VM > 1 or isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return [str(v) for v in value]
    if isinstance(value, int):
        return int(value)
    return str(value)


def capture_identity(ds: Dataset) -> dict[str, Any]:
    """The original identifying header of one instance (call before de-identification)."""
    missing = [k for k in (*_REQUIRED, *_REQUIRED_INSTANCE) if _value(ds, k) is None]
    if missing:
        raise DataError(f"The DICOM instance lacks {', '.join(missing)}; it cannot be filed back.")
    identity: dict[str, Any] = {k: v for k in STUDY_KEYS if (v := _value(ds, k)) is not None}
    instance = {k: v for k in INSTANCE_KEYS if (v := _value(ds, k)) is not None}
    identity["instances"] = [instance]
    return identity


def merge_identities(parts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """One study's identity from its instances' identities (first wins at study level;
    instances de-duplicated by SOP Instance UID, in order). All must share a study."""
    merged: dict[str, Any] = {}
    seen: set[str] = set()
    instances: list[dict[str, Any]] = []
    for part in parts:
        if not merged:
            merged = {k: v for k, v in part.items() if k != "instances"}
        elif part.get("StudyInstanceUID") != merged.get("StudyInstanceUID"):
            raise DataError("These instances belong to different studies; pull one at a time.")
        for inst in part.get("instances", []):
            if inst["SOPInstanceUID"] not in seen:
                seen.add(inst["SOPInstanceUID"])
                instances.append(dict(inst))
    if not merged:
        raise DataError("No instances: there is no identity to keep.")
    merged["instances"] = instances
    return merged


def instance_at(identity: dict[str, Any], position: int) -> dict[str, Any]:
    """The original instance that became MedLens image `position` (1-based)."""
    instances = identity.get("instances", [])
    for inst in instances:
        if inst.get("position") == position:
            return inst
    if not any("position" in inst for inst in instances) and 0 < position <= len(instances):
        return instances[position - 1]  # captured without positions: in intake order
    raise DataError(f"The study's identity has no original instance for image {position}.")


def identity_dataset(identity: dict[str, Any], position: int = 1) -> Dataset:
    """A header-only pydicom Dataset with the ORIGINAL identifiers of image `position`
    (study, patient, series, instance): the source that outgoing objects reference."""
    from pydicom import Dataset
    from pydicom.datadict import dictionary_VR

    ds = Dataset()
    fields = {
        **{k: v for k, v in identity.items() if k != "instances"},
        **{k: v for k, v in instance_at(identity, position).items() if k != "position"},
    }
    for keyword, value in fields.items():
        setattr(ds, keyword, value)
        if dictionary_VR(keyword) in ("IS", "US") and isinstance(value, str):
            setattr(ds, keyword, int(value))
    return ds


def identifying_values(identity: dict[str, Any]) -> set[str]:
    """Every original identifying string in the identity (for PHI sweeps: none of these
    may appear in the normal store, and outgoing objects must use these, no dummies)."""
    keys = (
        "PatientID",
        "PatientName",
        "PatientBirthDate",
        "AccessionNumber",
        "StudyID",
        "OtherPatientIDs",
        "StudyInstanceUID",
    )
    inst_keys = ("SOPInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID")
    found: set[str] = set()

    def add(value: Any) -> None:
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str) and len(v.strip()) >= 3:
                found.add(v.strip())

    for k in keys:
        add(identity.get(k))
    for inst in identity.get("instances", []):
        for k in inst_keys:
            add(inst.get(k))
    return found

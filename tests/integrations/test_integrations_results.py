"""SR / GSPS / SC objects from real files: valid (dciodvfy), readable (highdicom), and
carrying the ORIGINAL identifiers, never the de-identified ones."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest

from medlens.disclaimer import DISCLAIMER
from medlens.integrations.results import result_objects, sources_from_files, write_objects

from .results_helpers import CT, RG1, dciodvfy_errors, interpretation

hd = pytest.importorskip("highdicom")


@pytest.mark.parametrize("source", [RG1, CT], ids=["RG1_J2KI", "CT_small"])
@pytest.mark.parametrize("sr_kind", ["basic", "comprehensive"])
def test_every_object_passes_dciodvfy(source: Path, sr_kind: str, tmp_path: Path):
    sources = sources_from_files([source])
    objects = result_objects(interpretation(), sources, sr_kind=sr_kind, overlay="gsps")
    pixels = pydicom.dcmread(source).pixel_array
    if source == RG1:  # the SC needs PatientOrientation, which CT_small lacks
        objects += result_objects(interpretation(), sources, overlay="sc", pixels=pixels)[-1:]
    paths = write_objects(objects, tmp_path)
    assert {o.kind for o in objects} >= {"findings", "narrative", "gsps"}
    for path in paths:
        assert dciodvfy_errors(path) == [], path.name
        ds = pydicom.dcmread(path)
        assert "AI" in ds.SeriesDescription
        if ds.Modality == "SR":
            assert (ds.PreliminaryFlag, ds.VerificationFlag, ds.CompletionFlag) == (
                "PRELIMINARY", "UNVERIFIED", "COMPLETE")  # fmt: skip
            refs = ds.CurrentRequestedProcedureEvidenceSequence[0]
            ref = refs.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
            assert ref.ReferencedSOPInstanceUID == sources[0].SOPInstanceUID
    if source == RG1:
        sc = pydicom.dcmread(paths[-1])
        assert sc.BurnedInAnnotation == "YES" and sc.PhotometricInterpretation == "YBR_FULL_422"
        assert sc.file_meta.TransferSyntaxUID == pydicom.uid.JPEGBaseline8Bit
        gsps = pydicom.dcmread(next(p for p in paths if p.name.startswith("gsps")))
        assert gsps.PresentationLUTShape == "INVERSE"  # RG1 is MONOCHROME1


def test_findings_read_back_with_highdicom(tmp_path: Path):
    sources = sources_from_files([RG1])
    (path,) = write_objects(result_objects(interpretation(), sources)[:1], tmp_path)
    groups = hd.sr.srread(path).content.get_image_measurement_groups()
    got = {}
    for g in groups:
        (m,) = g.get_measurements()
        (q,) = g.get_qualitative_evaluations()
        assert m.unit.value == "1" and m.unit.scheme_designator == "UCUM"
        assert g.source_images[0].referenced_sop_instance_uid == sources[0].SOPInstanceUID
        got[(g.finding_type.scheme_designator, g.finding_type.value)] = (m.value, q.value.value)
    assert got[("SCT", "60046008")] == (pytest.approx(0.81), "52101004")  # effusion: present
    assert got[("SCT", "36118008")] == (pytest.approx(0.04), "272519000")  # pneumothorax: absent
    assert got[("99MEDLENS", "LUNG-OPACITY")] == (pytest.approx(0.55), "52101004")


def _texts(item) -> list[str]:
    out = [str(item.TextValue)] if "TextValue" in item else []
    for child in item.get("ContentSequence", []):
        out += _texts(child)
    return out


def test_narrative_has_report_disclaimer_and_image_reference(tmp_path: Path):
    sources = sources_from_files([RG1])
    narrative = result_objects(interpretation(), sources)[1].dataset
    text = "\n".join(_texts(narrative))
    assert "Small right pleural effusion." in text and DISCLAIMER in text
    assert narrative.ConceptNameCodeSequence[0].CodeValue == "18748-4"
    (path,) = write_objects(result_objects(interpretation(), sources)[1:2], tmp_path)
    if shutil.which("dsrdump"):
        dump = subprocess.run(["dsrdump", str(path)], capture_output=True, text=True).stdout
        assert "Findings" in dump and "INFERRED FROM" in dump.upper() and "Impression" in dump


def test_outputs_carry_original_identity_and_no_deidentified_values(tmp_path: Path):
    from medlens.imaging.deid import DeidPolicy, deidentify

    original = pydicom.dcmread(RG1, stop_before_pixels=True)
    deid = deidentify(pydicom.dcmread(RG1, stop_before_pixels=True),
                      DeidPolicy(secret=b"k" * 32)).dataset  # fmt: skip
    dummies = {str(deid.get(k)) for k in ("StudyInstanceUID", "SeriesInstanceUID",
               "SOPInstanceUID", "PatientID", "StudyDate")}  # fmt: skip
    dummies = {d for d in dummies if d and d != "None"}
    assert dummies.isdisjoint({str(original.get(k)) for k in ("StudyInstanceUID", "PatientID")})
    objects = result_objects(interpretation(), sources_from_files([RG1]), overlay="gsps")
    for path in write_objects(objects, tmp_path):
        raw = path.read_bytes()
        assert not [d for d in dummies if d.encode() in raw], path.name
        ds = pydicom.dcmread(path)
        assert (ds.StudyInstanceUID, ds.PatientID, ds.AccessionNumber) == (
            original.StudyInstanceUID, original.PatientID, original.AccessionNumber)
        assert ds.SeriesInstanceUID != original.SeriesInstanceUID  # a new AI series
        assert original.SOPInstanceUID.encode() in raw  # the source reference


def test_same_result_same_uids_and_non_dicom_is_a_clear_error(tmp_path: Path):
    from medlens.errors import InvalidImage

    a = result_objects(interpretation(), sources_from_files([RG1]))
    b = result_objects(interpretation(), sources_from_files([RG1]))
    assert [o.sop_instance_uid for o in a] == [o.sop_instance_uid for o in b]
    png = tmp_path / "x.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(InvalidImage, match="not a readable DICOM"):
        sources_from_files([png])


def test_objects_from_the_identity_table_pass_dciodvfy(tmp_path: Path):
    """Integrated studies: sources come from the protected identity, not from a file."""
    from medlens.integrations.identity import capture_identity
    from medlens.integrations.results import sources_from_identity

    header = pydicom.dcmread(RG1, stop_before_pixels=True)
    identity = capture_identity(header)
    identity["instances"][0]["position"] = 1
    objects = result_objects(interpretation(), sources_from_identity(identity), overlay="gsps")
    for path in write_objects(objects, tmp_path):
        assert dciodvfy_errors(path) == [], path.name
        ds = pydicom.dcmread(path)
        assert (ds.StudyInstanceUID, ds.PatientID) == (header.StudyInstanceUID, header.PatientID)

"""The original identity: captured before de-identification, kept apart, gone with its study."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pydicom
import pytest

from medlens.errors import DataError
from medlens.integrations.identity import (
    capture_identity,
    identifying_values,
    identity_dataset,
    instance_at,
    merge_identities,
)
from medlens.store.base import NewImage

SRC = Path(__file__).resolve().parents[2] / "src" / "medlens"


def _rg1(dicom_dir: Path) -> pydicom.Dataset:
    return pydicom.dcmread(dicom_dir / "RG1_J2KI.dcm", stop_before_pixels=True)


def test_capture_keeps_the_original_identifiers_and_uids(dicom_dir):
    ds = _rg1(dicom_dir)
    ident = capture_identity(ds)
    assert ident["PatientID"] == ds.PatientID and ident["PatientName"] == str(ds.PatientName)
    assert ident["StudyInstanceUID"] == ds.StudyInstanceUID
    assert ident["AccessionNumber"] == ds.AccessionNumber
    [inst] = ident["instances"]
    assert inst["SOPInstanceUID"] == ds.SOPInstanceUID
    assert inst["SeriesInstanceUID"] == ds.SeriesInstanceUID
    assert inst["SOPClassUID"] == ds.SOPClassUID


def test_a_header_without_uids_cannot_be_filed_back():
    ds = pydicom.Dataset()
    ds.PatientID = "X"
    with pytest.raises(DataError, match="StudyInstanceUID"):
        capture_identity(ds)


def test_merge_deduplicates_instances_and_refuses_two_studies(dicom_dir):
    rg1 = capture_identity(_rg1(dicom_dir))
    assert merge_identities([rg1, rg1])["instances"] == rg1["instances"]
    ct = capture_identity(pydicom.dcmread(dicom_dir / "CT_small.dcm", stop_before_pixels=True))
    with pytest.raises(DataError, match="different studies"):
        merge_identities([rg1, ct])


def test_identity_dataset_rebuilds_the_original_header_of_an_image(dicom_dir):
    ds = _rg1(dicom_dir)
    ident = capture_identity(ds)
    ident["instances"][0]["position"] = 1
    out = identity_dataset(ident, 1)
    for kw in ("PatientID", "PatientName", "StudyInstanceUID", "SeriesInstanceUID",
               "SOPInstanceUID", "AccessionNumber", "InstanceNumber"):  # fmt: skip
        assert str(out[kw].value) == str(ds[kw].value), kw
    with pytest.raises(DataError):
        instance_at(ident, 2)
    assert ds.PatientID in identifying_values(ident)


def test_identity_is_stored_apart_and_deleted_with_the_study(store, dicom_dir):
    sha = hashlib.sha256(b"x").hexdigest()
    study, _ = store.create_study(
        [NewImage(sha256=sha, pixel_sha256="b" * 64, format="png", filename="image 1",
                  metadata={}, data=b"x")], {})  # fmt: skip
    ident = capture_identity(_rg1(dicom_dir))
    assert store.get_study_identity(study.id) is None
    store.put_study_identity(study.id, ident)
    assert store.get_study_identity(study.id) == ident
    store.put_study_identity(study.id, {**ident, "AccessionNumber": "other"})  # replaces
    assert store.get_study_identity(study.id)["AccessionNumber"] == "other"
    assert store.find_study_by_key("nope") is None
    assert store.delete_study(study.id)
    assert store.get_study_identity(study.id) is None
    from medlens.errors import NotFound

    with pytest.raises(NotFound):
        store.put_study_identity(study.id, ident)


def test_only_the_integration_layer_reads_the_identity():
    # Never returned by an API, shown on a page or logged: nothing in server/, cli/,
    # tasks/ or jobs/ may read it; only medlens.integrations builds outgoing objects.
    readers = sorted(
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if "get_study_identity" in p.read_text("utf-8")
    )
    allowed = ("integrations/", "store/")
    assert readers and all(r.startswith(allowed) for r in readers), readers

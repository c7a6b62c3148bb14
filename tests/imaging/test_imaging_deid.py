"""De-identification: PS3.15 Annex E Table E.1-1 actions, UIDs, dates, burned-in policy."""

from __future__ import annotations

import csv
import io
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset

from medlens.errors import DeidentificationBlocked
from medlens.imaging.deid import (
    DeidPolicy,
    dataset_bytes,
    date_offset_days,
    deidentify,
    deidentify_bytes,
    profile_table,
    remap_uid,
    site_secret,
)

SECRET = b"unit-test-site-secret"
UID_ROOT = "1.2.3.999."


def test_table_keywords_match_the_dicom_dictionary() -> None:
    table = profile_table()
    assert len(table) > 250
    for tag, (keyword, action) in table.items():
        assert keyword_for_tag(tag) == keyword, hex(tag)
        assert action in {"X", "Z", "D", "U", "X/Z", "X/D", "X/Z/D", "Z/D", "X/Z/U*"}


def _value(tag: int, vr: str, n: int) -> object:
    if vr == "UI":
        return f"{UID_ROOT}{n}"
    if vr == "PN":
        return f"Phi^Name{n}"
    if vr == "DA":
        return "20010203"
    if vr == "TM":
        return "101010"
    if vr == "DT":
        return "20010203101010"
    if vr == "AS":
        return "045Y"
    if vr in ("DS", "IS"):
        return "7"
    if vr in ("US", "SS", "UL", "SL", "UV", "SV"):
        return 7
    if vr in ("FL", "FD"):
        return 7.0
    if vr == "AT":
        return 0x00100010
    if vr in ("OB", "OW", "UN", "OF", "OD", "OL"):
        return b"PHIBYTES" + str(n).encode().rjust(8, b"0")
    if vr == "CS":
        return f"PHICS{n}"
    if vr in ("SH", "AE"):
        return f"PHI{n}"
    return f"PHI-TEXT-{n}"


def _table_dataset() -> tuple[Dataset, dict[int, object]]:
    """Every Table E.1-1 attribute with an identifying value; each SQ holds a nested copy
    of a few identifiers; plus an unlisted sequence holding the full table again."""
    ds, originals = Dataset(), {}
    nested_names = Dataset()
    nested_names.PatientName = "Nested^Person"
    nested_names.ReferencedSOPInstanceUID = f"{UID_ROOT}77777"
    n = 0
    for tag in profile_table():
        if tag >> 16 == 0x0002:
            continue  # file meta: covered by the shared-file test
        vr = dictionary_VR(tag).split(" or ")[0]
        n += 1
        if vr == "SQ":
            item = Dataset()
            item.PatientID = f"NESTED-ID-{n}"
            item.ReferencedSOPInstanceUID = f"{UID_ROOT}{n}"
            item.ContentSequence = [nested_names]  # X: must disappear
            item.AnatomicRegionSequence = [nested_names]  # unlisted: walked
            ds.add_new(tag, "SQ", [item])
        else:
            value = _value(tag, vr, n)
            ds.add_new(tag, vr, value)
            originals[tag] = value
    inner = Dataset()
    for tag, value in originals.items():
        if tag >> 16 != 0x0002:
            inner.add_new(tag, dictionary_VR(tag).split(" or ")[0], value)
    ds.AnatomicRegionSequence = [inner]  # not in the table: walked, not removed
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    return ds, originals


def _check_level(ds: Dataset, originals: dict[int, object], where: str) -> None:
    for tag, (keyword, action) in profile_table().items():
        if tag not in originals or (where != "top" and tag >> 16 == 0x0002):
            continue
        if tag >> 16 == 0x0002:
            continue  # file meta attributes are handled in the file_meta test
        present = tag in ds
        value = ds[tag].value if present else None
        label = f"{where}:{keyword}:{action}"
        if action == "X":
            assert not present, label
        elif action == "U":
            assert present and str(value).startswith("2.25."), label
            assert str(value) == remap_uid(str(originals[tag]), SECRET), label
        elif action in ("D", "X/D") or (
            action in ("X/Z/D", "Z/D") and dictionary_VR(tag) not in ("DA", "DT", "TM")
        ):  # X/Z/D, Z/D: a dummy keeps Type 1 valid; dates under "remove" are emptied
            assert present and value not in (None, "") and value != originals[tag], label
        else:  # Z, X/Z; X/Z/D, Z/D dates
            assert present and value in (None, "", b"", []), label


def test_every_table_attribute_handled_at_top_level_and_in_sequences() -> None:
    ds, originals = _table_dataset()
    result = deidentify(ds, DeidPolicy(SECRET, dates="remove"))
    _check_level(ds, originals, "top")
    _check_level(ds.AnatomicRegionSequence[0], originals, "nested")
    # X/Z/U* reference sequences are kept with their UIDs remapped, names inside cleaned.
    for keyword in ("ReferencedImageSequence", "SourceImageSequence"):
        item = ds[keyword][0]
        assert item.ReferencedSOPInstanceUID.startswith("2.25.")
        assert item.get("PatientID", "") == ""
        assert "ContentSequence" not in item
        assert item.AnatomicRegionSequence[0].PatientName == ""
    assert ds.PatientIdentityRemoved == "YES"
    assert result.identity_removed and not result.warnings
    codes = [i.CodeValue for i in ds.DeidentificationMethodCodeSequence]
    assert codes == ["113100"]
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"


def test_phi_sweep_of_output_bytes_finds_no_input_value() -> None:
    ds, originals = _table_dataset()
    ds.file_meta = _meta(ds)
    deidentify(ds, DeidPolicy(SECRET, dates="remove"))
    out = dataset_bytes(ds)
    needles = {str(v).encode() for v in originals.values() if not isinstance(v, (int, float))}
    needles |= {v for v in originals.values() if isinstance(v, bytes)}
    needles |= {b"Nested^Person", b"NESTED-ID-", b"20010203", UID_ROOT.encode()}
    needles.discard(b"7")
    leaked = sorted(n for n in needles if n in out)
    assert not leaked


def _meta(ds: Dataset):
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return meta


def test_shared_files_phi_sweep(dicom_dir: Path) -> None:
    rows = list(csv.DictReader((dicom_dir / "dicom_index.csv").open()))
    policy = DeidPolicy(SECRET)
    for row in rows:
        data = (dicom_dir / row["file"]).read_bytes()
        out, _ = deidentify_bytes(data, policy, name=row["file"])
        header = dcmread(io.BytesIO(out), stop_before_pixels=True)
        header_bytes = dataset_bytes(header)
        # Manufacturer is kept by the Basic Profile (MR_small: "TOSHIBA_MEC" contains the
        # institution "TOSHIBA"), so sweep for the institution outside that attribute.
        if "Manufacturer" in header:
            header.Manufacturer = ""
            header_bytes = dataset_bytes(header)
        assert header.get("InstitutionName") in (None, "", "ANONYMIZED")  # X/Z/D: dummy
        for key in (
            "patient_name",
            "patient_id",
            "patient_birth_date",
            "institution",
            "referring_physician",
            "accession_number",
        ):
            value = row[key].encode()
            if value:
                assert value not in header_bytes, (row["file"], key)
                if len(value) >= 6 and key != "institution":
                    assert value not in out, (row["file"], key)
        assert header.StudyInstanceUID != dcmread(io.BytesIO(data)).StudyInstanceUID
        assert header.file_meta.MediaStorageSOPInstanceUID == header.SOPInstanceUID
        assert not any(e.tag.is_private for e in header.iterall())


def _instance(sop: str, ref: str | None = None) -> Dataset:
    ds = Dataset()
    ds.PatientName, ds.PatientID = "Roe^Richard", "MRN-4242"
    ds.StudyInstanceUID = f"{UID_ROOT}100"
    ds.SeriesInstanceUID = f"{UID_ROOT}100.1"
    ds.FrameOfReferenceUID = f"{UID_ROOT}100.9"
    ds.SOPInstanceUID = sop
    ds.StudyDate, ds.SeriesDate, ds.ContentDate = "20200110", "20200110", "20200115"
    if ref:
        item = Dataset()
        item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
        item.ReferencedSOPInstanceUID = ref
        ds.ReferencedImageSequence = [item]
    return ds


def test_two_instances_of_one_study_keep_consistent_uids() -> None:
    policy = DeidPolicy(SECRET)
    a = _instance(f"{UID_ROOT}100.1.1")
    b = _instance(f"{UID_ROOT}100.1.2", ref=f"{UID_ROOT}100.1.1")
    deidentify(a, policy)
    deidentify(b, policy)
    assert a.StudyInstanceUID == b.StudyInstanceUID != f"{UID_ROOT}100"
    assert a.SeriesInstanceUID == b.SeriesInstanceUID
    assert a.FrameOfReferenceUID == b.FrameOfReferenceUID
    assert a.SOPInstanceUID != b.SOPInstanceUID
    assert b.ReferencedImageSequence[0].ReferencedSOPInstanceUID == a.SOPInstanceUID
    assert len(a.StudyInstanceUID) <= 64 and a.StudyInstanceUID.startswith("2.25.")
    # Deterministic under one secret, different under another.
    again = _instance(f"{UID_ROOT}100.1.1")
    deidentify(again, policy)
    assert again.SOPInstanceUID == a.SOPInstanceUID
    other = _instance(f"{UID_ROOT}100.1.1")
    deidentify(other, DeidPolicy(b"another-site"))
    assert other.StudyInstanceUID != a.StudyInstanceUID


def test_date_shift_is_per_patient_and_keeps_intervals() -> None:
    import datetime as dt

    a = _instance(f"{UID_ROOT}1")
    deidentify(a, DeidPolicy(SECRET, dates="shift"))
    days = date_offset_days("MRN-4242|Roe^Richard", SECRET)
    assert 1 <= days <= 3650
    want = (dt.date(2020, 1, 10) - dt.timedelta(days=days)).strftime("%Y%m%d")
    assert a.StudyDate == want  # Z in the basic profile, shifted under the dates option
    assert "SeriesDate" not in a  # X: removed whatever the option
    shifted = dt.datetime.strptime(a.ContentDate, "%Y%m%d") - dt.datetime.strptime(
        a.StudyDate, "%Y%m%d"
    )
    assert shifted.days == 5
    codes = [i.CodeValue for i in a.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113107"]
    assert a.LongitudinalTemporalInformationModified == "MODIFIED"
    b = _instance(f"{UID_ROOT}1")
    deidentify(b, DeidPolicy(SECRET, dates="remove"))
    assert b.StudyDate == "" and b.ContentDate == ""


def test_private_tags_removed_unless_retain_safe_private() -> None:
    def make() -> Dataset:
        ds = _instance(f"{UID_ROOT}5")
        block = ds.private_block(0x0029, "ACME 1.0", create=True)
        block.add_new(0x10, "LO", "Doe^Jane private note")
        block.add_new(0x11, "US", 512)
        return ds

    plain = make()
    result = deidentify(plain, DeidPolicy(SECRET))
    assert not any(e.tag.is_private for e in plain)
    assert result.summary()["private-removed"] == 3  # creator + 2 elements
    kept = make()
    deidentify(kept, DeidPolicy(SECRET, retain_safe_private=True))
    private = {e.VR: e.value for e in kept if e.tag.is_private}
    assert private.get("US") == 512
    assert "Doe^Jane private note" not in [str(v) for v in private.values()]
    assert "113111" in [i.CodeValue for i in kept.DeidentificationMethodCodeSequence]


def _with_pixels(burned: str | None) -> Dataset:
    ds = _instance(f"{UID_ROOT}9")
    ds.Rows = ds.Columns = 2
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = bytes(4)
    if burned is not None:
        ds.BurnedInAnnotation = burned
    return ds


@pytest.mark.parametrize("burned", ["YES", None])
def test_burned_in_policy_block(burned: str | None) -> None:
    with pytest.raises(DeidentificationBlocked, match="BurnedInAnnotation"):
        deidentify(_with_pixels(burned), DeidPolicy(SECRET, burned_in="block"))


@pytest.mark.parametrize("burned", ["YES", None])
def test_burned_in_policy_warn_then_identity_not_removed(burned: str | None) -> None:
    ds = _with_pixels(burned)
    result = deidentify(ds, DeidPolicy(SECRET, burned_in="warn"))
    assert result.warnings and not result.identity_removed
    assert ds.PatientIdentityRemoved == "NO"
    assert ds.PatientName == ""  # the rest of the profile still ran


def test_burned_in_no_gives_identity_removed_yes() -> None:
    ds = _with_pixels("NO")
    deidentify(ds, DeidPolicy(SECRET, burned_in="block"))
    assert ds.PatientIdentityRemoved == "YES"


def test_ingest_with_deid_reports_remapped_uids_and_stores_clean_dicom(dicom_dir: Path) -> None:
    from medlens.imaging.ingest import ingest

    img = ingest(dicom_dir / "examples_overlay.dcm", deid=DeidPolicy(SECRET))
    original = dcmread(dicom_dir / "examples_overlay.dcm", stop_before_pixels=True)
    assert img.metadata.study_uid == remap_uid(original.StudyInstanceUID, SECRET)
    assert img.metadata.patient_identity_removed is False  # BurnedInAnnotation absent
    assert img.metadata.description is None  # StudyDescription is X in the profile
    stored = img.deidentified_bytes or b""
    assert b"Sssssss" not in stored and b"AKH - WIEN" not in stored
    assert img.deid_summary.get("uid-remapped", 0) >= 3


def test_site_secret_generated_once_with_mode_0600(tmp_path: Path) -> None:
    from medlens.config import Settings

    settings = Settings(data_dir=tmp_path)
    first = site_secret(settings)
    assert first == site_secret(settings) and len(first) == 64
    mode = stat.S_IMODE(os.stat(tmp_path / "site_secret").st_mode)
    assert mode == 0o600
    assert site_secret(Settings(data_dir=tmp_path, site_secret="explicit")) == b"explicit"


def test_overlay_group_60xx_removed() -> None:
    ds = _instance(f"{UID_ROOT}3")
    ds.add_new(0x60020022, "LO", "Overlay description")
    ds.add_new(0x60024000, "LT", "Doe^Jane overlay comment")
    ds.add_new(0x60023000, "OW", np.zeros(4, np.uint16).tobytes())
    deidentify(ds, DeidPolicy(SECRET))
    # Overlay Data/Comments are X; the plane goes whole (a partial plane is invalid).
    assert not any(e.tag.group == 0x6002 for e in ds)

"""Chest X-ray gate, the model-free half: refuses wrong modalities/body parts/photos/blank
images with reasons (the encoder half: tests/tasks/test_tasks_gate.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medlens.errors import ImageRefused, UnsupportedDicom
from medlens.imaging.gate import gate_chest_xray, gate_metadata, require_chest_xray
from medlens.imaging.ingest import ingest, probe


@pytest.mark.parametrize(
    "name,reason",
    [
        ("CT_small.dcm", "CT"),
        ("MR_small.dcm", "MRI"),
        ("MR_small_RLE.dcm", "MRI"),
        ("examples_overlay.dcm", "MRI"),
    ],
)
def test_refuses_non_radiograph_dicoms(dicom_dir: Path, name: str, reason: str) -> None:
    decision = gate_chest_xray(ingest(dicom_dir / name))
    assert not decision.accepted and reason in decision.reason
    with pytest.raises(ImageRefused, match=reason):
        require_chest_xray(ingest(dicom_dir / name))


def test_undecodable_nm_file_is_refused_from_its_header(dicom_dir: Path) -> None:
    with pytest.raises(UnsupportedDicom):
        ingest(dicom_dir / "JPEG-lossy.dcm")
    decision = gate_metadata(probe(dicom_dir / "JPEG-lossy.dcm"))
    assert not decision.accepted and "nuclear medicine" in decision.reason
    sr = gate_metadata(probe(dicom_dir / "test-SR.dcm"))
    assert not sr.accepted and "structured report" in sr.reason


def test_accepts_the_chest_radiograph_dicom(dicom_dir: Path) -> None:
    decision = require_chest_xray(ingest(dicom_dir / "RG1_J2KI.dcm"))
    assert decision.accepted and decision.method == "dicom-tags"


def test_accepts_every_shared_cxr_by_statistics(shared_data: Path) -> None:
    # Issue 23's targets: no NIH image refused; <= 5 % of the COVID collection, which holds
    # paper figure crops (rates per split: test_imaging_radiograph_check.py).
    for collection, limit in (("nih_cxr14_sample", 0.0), ("covid_chestxray", 0.05)):
        files = sorted((shared_data / "cxr" / collection).glob("images/*"))
        refused = [f.name for f in files if not gate_chest_xray(ingest(f)).accepted]
        assert len(refused) <= limit * len(files), (collection, refused)


def _dicom(mk, **tags) -> object:
    ds = mk.dicom(mk.gradient(96, 96), **tags)
    return ingest(mk.dicom_bytes(ds))


def test_knee_radiograph_refused_and_lateral_flagged(mk) -> None:
    knee = gate_chest_xray(_dicom(mk, modality="DX", BodyPartExamined="KNEE"))
    assert not knee.accepted and "knee radiograph" in knee.reason
    lateral = gate_chest_xray(
        _dicom(mk, modality="DX", BodyPartExamined="CHEST", ViewPosition="LL")
    )
    assert lateral.accepted and "lateral view" in lateral.flags


def test_metadata_gate_alone() -> None:
    from medlens.imaging.types import ImageMetadata

    assert gate_metadata(ImageMetadata(modality="DX", body_part="THORAX")).accepted
    assert not gate_metadata(ImageMetadata(modality="MG")).accepted
    us = gate_metadata(ImageMetadata(modality="US"))
    assert "ultrasound" in us.reason


def _photo() -> Image.Image:
    y, x = np.mgrid[0:200, 0:300]
    rgb = np.stack([(x % 256), (y * 2 % 256), ((x + y) % 256)], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


def test_colour_photo_and_blank_and_tiny_refused(mk) -> None:
    photo = gate_chest_xray(ingest(mk.jpeg(_photo())))
    assert not photo.accepted and "colour photograph" in photo.reason
    blank = gate_chest_xray(ingest(mk.png(Image.new("L", (300, 300), 0))))
    assert not blank.accepted and "blank" in blank.reason
    grey_noise = Image.fromarray(
        np.full((300, 300), 128, np.uint8)
        + np.random.default_rng(0).integers(0, 3, (300, 300), dtype=np.uint8)
    )
    assert not gate_chest_xray(ingest(mk.png(grey_noise))).accepted
    tiny = gate_chest_xray(ingest(mk.png(Image.fromarray(mk.gradient(32, 32), "L"))))
    assert not tiny.accepted and "too small" in tiny.reason


def test_volume_refused(mk, tmp_path: Path, dicom_dir: Path) -> None:
    from pydicom import dcmread

    for i in range(3):
        ds = dcmread(dicom_dir / "CT_small.dcm")
        ds.SOPInstanceUID = f"{ds.SOPInstanceUID}.{i}"
        ds.ImagePositionPatient = [0, 0, float(i)]
        ds.save_as(tmp_path / f"s{i}.dcm")
    decision = gate_chest_xray(ingest(tmp_path))
    assert not decision.accepted and "volume" in decision.reason


def test_decision_is_a_plain_dataclass(dicom_dir: Path) -> None:
    d = gate_chest_xray(ingest(dicom_dir / "CT_small.dcm"))
    assert dataclasses.asdict(d)["accepted"] is False

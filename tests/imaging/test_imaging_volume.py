"""CT/MR series → volume: slice order, ≤85 uniform slices, MedGemma 1.5 CT windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

from medlens.errors import InvalidImage
from medlens.imaging.dicom_volume import MAX_SLICES, sample_indices
from medlens.imaging.ingest import ingest


def test_sample_indices_uniform_and_bounded() -> None:
    assert sample_indices(10) == list(range(10))
    idx = sample_indices(200)
    assert len(idx) == MAX_SLICES == 85
    assert idx[0] == 0 and idx[-1] == 199
    steps = np.diff(idx)
    assert (steps > 0).all() and steps.max() - steps.min() <= 1


def _write_series(folder: Path, src: Path, n: int, *, shuffle: bool = True) -> list[float]:
    rng = np.random.default_rng(0)
    positions = [float(z) for z in range(n)]
    order = rng.permutation(n) if shuffle else np.arange(n)
    base = dcmread(src)
    for k, i in enumerate(order):
        ds = dcmread(src)
        ds.SOPInstanceUID = f"{base.SOPInstanceUID}.{i}"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, positions[i]]
        ds.InstanceNumber = int(i) + 1
        arr = ds.pixel_array.copy()
        arr[0, 0] = int(i) * 10  # slice marker in the corner (stored value)
        ds.PixelData = arr.tobytes()
        ds.save_as(folder / f"file{k:03d}.dcm")  # file names in shuffled order
    return positions


def test_ct_series_sorted_by_position_and_windowed(tmp_path: Path, dicom_dir: Path) -> None:
    _write_series(tmp_path, dicom_dir / "CT_small.dcm", 6)
    img = ingest(tmp_path)
    vol = img.volume
    assert vol is not None and vol.shape == (6, 128, 128, 3) and vol.dtype == np.uint8
    ds = dcmread(dicom_dir / "CT_small.dcm")
    slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    for z in range(6):
        hu = z * 10 * slope + intercept  # the corner marker, in Hounsfield units
        want = [
            np.clip(np.rint((hu - lo) * 255 / (hi - lo)), 0, 255)
            for lo, hi in ((-1024, 1024), (-135, 215), (0, 80))
        ]
        assert vol[z, 0, 0].tolist() == want
    # An interior pixel: same HU on every slice → same RGB.
    hu_mid = float(ds.pixel_array[64, 64]) * slope + intercept
    assert vol[0, 64, 64, 0] == np.clip(np.rint((hu_mid + 1024) * 255 / 2048), 0, 255)
    assert img.metadata.modality == "CT" and img.metadata.frames == 6
    assert img.image.mode == "RGB"


def test_long_series_sampled_to_85(tmp_path: Path, dicom_dir: Path) -> None:
    _write_series(tmp_path, dicom_dir / "MR_small.dcm", 100, shuffle=False)
    img = ingest(sorted(tmp_path.iterdir()))
    assert img.volume is not None and img.volume.shape == (85, 64, 64, 3)
    # MR: one window for the volume, grey on all three channels.
    assert np.array_equal(img.volume[..., 0], img.volume[..., 2])


def test_mixed_series_refused(tmp_path: Path, dicom_dir: Path) -> None:
    _write_series(tmp_path, dicom_dir / "CT_small.dcm", 2)
    other = dcmread(dicom_dir / "CT_small.dcm")
    other.SeriesInstanceUID = "1.2.3.4.5.6"
    other.save_as(tmp_path / "other.dcm")
    with pytest.raises(InvalidImage, match="different series"):
        ingest(tmp_path)


def test_folder_skips_non_dicom_files(tmp_path: Path, dicom_dir: Path) -> None:
    _write_series(tmp_path, dicom_dir / "CT_small.dcm", 3)
    (tmp_path / "notes.txt").write_text("hello")
    img = ingest(tmp_path)
    assert img.volume is not None and len(img.volume) == 3
    assert any("notes.txt" in w for w in img.warnings)


def test_enhanced_ct_rescale_from_functional_groups(mk) -> None:
    from pydicom.dataset import Dataset

    stored = np.full((3, 8, 8), 1024, np.uint16)  # HU 0 with intercept −1024
    ds = mk.dicom(stored, modality="CT", sop_class=mk.CT)
    pvt = Dataset()
    pvt.RescaleSlope, pvt.RescaleIntercept = 1, -1024
    shared = Dataset()
    shared.PixelValueTransformationSequence = [pvt]
    ds.SharedFunctionalGroupsSequence = [shared]
    vol = ingest(mk.dicom_bytes(ds)).volume
    assert vol is not None
    # HU 0 → R 255·1024/2048 = 127.5 → 128; G 255·135/350 = 98.4 → 98; B 0.
    assert vol[0, 0, 0].tolist() == [128, 98, 0]

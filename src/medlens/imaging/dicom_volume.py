"""CT/MR series (several files, or one multi-frame file) → a volume MedGemma 1.5 can read.

CT: stored values → Hounsfield units (modality LUT) → three windows mapped to R, G, B:
(−1024, 1024) wide, (−135, 215) soft tissue, (0, 80) brain — MedGemma 1.5's recipe.
MR and others: one robust window (0.5–99.5th percentile of the volume) on all channels.
At most 85 slices, sampled uniformly; only the sampled slices are decoded.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from medlens.errors import InvalidImage

CT_WINDOWS: tuple[tuple[float, float], ...] = ((-1024.0, 1024.0), (-135.0, 215.0), (0.0, 80.0))
MAX_SLICES = 85
VOLUME_MODALITIES = {"CT", "MR", "PT", "NM"}


def sample_indices(n: int, k: int = MAX_SLICES) -> list[int]:
    """k indices spread uniformly over range(n), first and last included (all when n ≤ k)."""
    if n <= k:
        return list(range(n))
    return [round(i * (n - 1) / (k - 1)) for i in range(k)]


def ct_to_rgb(hu: np.ndarray) -> np.ndarray:
    """HU array (...) → uint8 (..., 3), one window per channel."""
    out = np.empty((*hu.shape, 3), np.uint8)
    for c, (lo, hi) in enumerate(CT_WINDOWS):
        scaled = (hu.astype(np.float32) - lo) * (255.0 / (hi - lo))
        out[..., c] = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return out


def grey_to_rgb(values: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(values, [0.5, 99.5])
    if hi <= lo:
        hi = lo + 1.0
    grey = np.clip(np.rint((values - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def slice_order(datasets: Sequence[Any]) -> list[int]:
    """Indices sorting slices along the slice normal (InstanceNumber as a fallback)."""
    try:
        iop = np.asarray(datasets[0].ImageOrientationPatient, dtype=float)
        normal = np.cross(iop[:3], iop[3:])
        keys = [float(np.dot(normal, np.asarray(d.ImagePositionPatient, float))) for d in datasets]
    except (AttributeError, ValueError, TypeError, IndexError):
        keys = [float(d.get("InstanceNumber", i) or i) for i, d in enumerate(datasets)]
    return sorted(range(len(datasets)), key=lambda i: keys[i])


def build_volume(frames_hu_or_values: np.ndarray, modality: str) -> np.ndarray:
    """(S, H, W) modality-LUT values → (S, H, W, 3) uint8."""
    if modality == "CT":
        return ct_to_rgb(frames_hu_or_values)
    return grey_to_rgb(frames_hu_or_values.astype(np.float32))


def volume_from_series(datasets: Sequence[Any], label: str) -> np.ndarray:
    """Several single-frame datasets of one series → (S, H, W, 3) uint8."""
    from pydicom.pixels import apply_modality_lut

    from medlens.imaging.dicom_decode import decode_pixels

    if not datasets:
        raise InvalidImage(f"{label}: no DICOM images found for a series.")
    series = {str(d.get("SeriesInstanceUID", "")) for d in datasets}
    if len(series) > 1:
        raise InvalidImage(
            f"{label}: the files belong to {len(series)} different series; send one series."
        )
    shapes = {(int(d.Rows), int(d.Columns)) for d in datasets}
    if len(shapes) > 1:
        raise InvalidImage(f"{label}: slices have different sizes {sorted(shapes)}.")
    order = slice_order(datasets)
    picked = [datasets[order[i]] for i in sample_indices(len(order))]
    slices = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for d in picked:
            raw = decode_pixels(d, label, 0)
            if raw.ndim != 2:
                raise InvalidImage(f"{label}: colour slices cannot form a CT/MR volume.")
            slices.append(np.asarray(apply_modality_lut(raw, d), dtype=np.float32))
    modality = str(datasets[0].get("Modality", "")).upper()
    return build_volume(np.stack(slices), modality)


def volume_from_multiframe(ds: Any, label: str) -> np.ndarray:
    """One enhanced/multi-frame CT or MR → (S, H, W, 3) uint8 (frames in stored order)."""
    from pydicom.pixels import apply_modality_lut

    from medlens.imaging.dicom_decode import decode_pixels, frame_count

    _lift_rescale(ds)
    n = frame_count(ds)
    frames = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in sample_indices(n):
            raw = decode_pixels(ds, label, i)
            if raw.ndim != 2:
                raise InvalidImage(f"{label}: colour frames cannot form a CT/MR volume.")
            frames.append(np.asarray(apply_modality_lut(raw, ds), dtype=np.float32))
    modality = str(ds.get("Modality", "")).upper()
    return build_volume(np.stack(frames), modality)


def _lift_rescale(ds: Any) -> None:
    """Enhanced CT/MR keep Rescale Slope/Intercept in the shared functional groups; copy
    them to the top level where the modality LUT looks (same value for every frame)."""
    if "RescaleSlope" in ds:
        return
    try:
        shared = ds.SharedFunctionalGroupsSequence[0]
        pvt = shared.PixelValueTransformationSequence[0]
        ds.RescaleSlope, ds.RescaleIntercept = pvt.RescaleSlope, pvt.RescaleIntercept
        ds.RescaleType = pvt.get("RescaleType", "HU")
    except (AttributeError, IndexError, KeyError):
        return

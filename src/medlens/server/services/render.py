"""De-identified blob → PNG for the page, with optional DICOM window/level.

DICOM blobs are decoded again from the de-identified file (so a window change works on
the full stored bit depth, not on an 8-bit rendering); PNG blobs are served as stored.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image

from medlens.errors import InvalidImage

MAX_SIDE = 1600  # the page never needs more; keeps renders fast


def _fit(img: Image.Image) -> Image.Image:
    if max(img.size) > MAX_SIDE:
        img = img.copy()
        img.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    return img


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    _fit(img).save(buf, format="PNG")
    return buf.getvalue()


def dicom_window_defaults(data: bytes) -> dict[str, float] | None:
    """Stored-value range and default window of a greyscale DICOM (for the page's sliders)."""
    from medlens.imaging.dicom_decode import decode_pixels, read_dataset

    ds = read_dataset(data, "image")
    arr = decode_pixels(ds, "image", 0)
    if arr.ndim != 2:
        return None
    values = _modality(arr, ds)
    lo, hi = float(values.min()), float(values.max())
    center, width = (lo + hi) / 2, max(hi - lo, 1.0)
    try:
        c, w = ds.get("WindowCenter"), ds.get("WindowWidth")
        if c is not None and w is not None:
            center = float(c[0] if hasattr(c, "__len__") and not isinstance(c, str) else c)
            width = float(w[0] if hasattr(w, "__len__") and not isinstance(w, str) else w)
    except (TypeError, ValueError):
        pass
    return {"min": lo, "max": hi, "center": center, "width": width}


def _modality(arr: np.ndarray, ds: Any) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut

    return np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)


def render_png(
    data: bytes, fmt: str, *, center: float | None = None, width: float | None = None
) -> bytes:
    if fmt != "dicom":
        try:
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                return _png(img) if max(img.size) > MAX_SIDE else data
        except Exception as exc:  # stored blobs were validated; this is damage on disk
            raise InvalidImage(f"The stored image cannot be read ({exc}).") from exc

    from medlens.imaging.dicom_decode import decode_pixels, read_dataset, to_display

    ds = read_dataset(data, "image")
    arr = decode_pixels(ds, "image", 0)
    if center is None or width is None or arr.ndim != 2:
        return _png(Image.fromarray(np.asarray(to_display(arr, ds), dtype=np.uint8)))
    values = _modality(arr, ds)
    width = max(float(width), 1.0)
    low = center - width / 2
    scaled = np.clip((values - low) / width, 0.0, 1.0) * 255.0
    if str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        scaled = 255.0 - scaled
    return _png(Image.fromarray(scaled.round().astype(np.uint8), mode="L"))

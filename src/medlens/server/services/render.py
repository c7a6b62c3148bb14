"""A stored image → PNG for the page, with optional DICOM window/level.

Nothing is decoded here: the pixels come from the decoded copy kept at upload (through
the intake's cache), so a window change works on the full stored bit depth through
`imaging.dicom_decode`'s own display functions. A PNG blob small enough for the page is
served as stored.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

import numpy as np
from PIL import Image

from medlens.errors import InvalidImage
from medlens.jobs.intake import decoded_image
from medlens.store.base import StoredImage

MAX_SIDE = 1600  # the page never needs more; keeps renders fast


def _png(pixels: np.ndarray) -> bytes:
    img = Image.fromarray(np.asarray(pixels), "RGB" if pixels.ndim == 3 else "L")
    if max(img.size) > MAX_SIDE:
        img.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _fits_page(image: StoredImage) -> bool:
    rows, cols = image.metadata.get("rows"), image.metadata.get("columns")
    return isinstance(rows, int) and isinstance(cols, int) and 0 < max(rows, cols) <= MAX_SIDE


# An 8-bit PNG/JPEG has no stored bit depth beyond its display values: its "window" is a
# contrast stretch of 0..255, so a prior/current pair can share one control (issue 20).
EIGHT_BIT_WINDOW = {"min": 0.0, "max": 255.0, "center": 127.5, "width": 255.0}


def render_png(
    blobs: Any, image: StoredImage, *, center: float | None = None, width: float | None = None
) -> bytes:
    """The image as PNG; `center`/`width` window a greyscale DICOM at its stored bit depth,
    and stretch a PNG/JPEG's 8-bit values (without both, the default rendering)."""
    windowed = center is not None and width is not None
    if image.format != "dicom" and _fits_page(image) and not windowed:
        data = blobs.read(image.sha256)
        if hashlib.sha256(data).hexdigest() != image.sha256:  # damage on disk
            raise InvalidImage("The stored image cannot be read (its content has changed).")
        return data
    decoded = decoded_image(blobs, image)
    if image.format != "dicom" and center is not None and width is not None:
        from medlens.imaging.dicom_decode import window_display

        return _png(window_display(decoded.display, center, width, None))
    return _png(decoded.rendered(center, width))


def window_defaults(blobs: Any, image: StoredImage) -> dict[str, float] | None:
    """Value range and default window for the page's sliders: a greyscale DICOM's stored
    values, or 0..255 for a PNG/JPEG (null for a colour DICOM: no window applies)."""
    if image.format != "dicom":
        return dict(EIGHT_BIT_WINDOW)
    return decoded_image(blobs, image).window_defaults()

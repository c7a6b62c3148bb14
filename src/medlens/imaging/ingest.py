"""Ingest: bytes or a path → a validated, decoded IngestedImage.

MINIMAL FIRST VERSION (PNG/JPEG only); the imaging issue replaces the internals with
signature detection, DICOM, bombs and truncation handling, keeping this signature.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from PIL import Image, ImageOps

from medlens.errors import InvalidImage, UnsupportedImageType
from medlens.imaging.types import ImageMetadata, IngestedImage


def ingest(source: bytes | str | Path, *, name: str | None = None) -> IngestedImage:
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InvalidImage(f"Cannot read {path}: {exc.strerror or exc}") from exc
        name = name or path.name
    else:
        data = source
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        fmt = "png"
    elif data[:3] == b"\xff\xd8\xff":
        fmt = "jpeg"
    else:
        raise UnsupportedImageType(f"{name or 'input'}: not a PNG, JPEG or DICOM file.")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            img = img.convert("L" if img.mode in ("L", "I", "I;16", "1") else "RGB")
    except Exception as exc:
        raise InvalidImage(f"{name or 'input'}: unreadable image ({exc}).") from exc
    return IngestedImage(
        image=img,
        format=fmt,  # type: ignore[arg-type]
        sha256=hashlib.sha256(data).hexdigest(),
        pixel_sha256=hashlib.sha256(img.tobytes() + str(img.size).encode()).hexdigest(),
        metadata=ImageMetadata(rows=img.size[1], columns=img.size[0]),
        source_name=name,
    )

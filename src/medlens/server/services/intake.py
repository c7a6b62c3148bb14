"""Upload intake: bytes → decoded, gated, de-identified image ready for the store.

The original upload is never written anywhere: it is decoded in memory (which is what
catches truncated files at upload time), checked by the chest X-ray gate, then
de-identified; only the de-identified bytes become a blob. PNG/JPEG are re-encoded from
their decoded pixels as PNG, which drops EXIF, text chunks and ICC profiles.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from medlens.config import Settings
from medlens.imaging.types import IngestedImage
from medlens.store.base import NewImage

_UNSAFE = re.compile(r"[^A-Za-z0-9._ ()+-]")


def safe_filename(name: str | None) -> str:
    """Display name only (never a path): last component, printable, ≤ 120 chars."""
    base = unicodedata.normalize("NFKC", name or "image").replace("\\", "/").split("/")[-1]
    base = _UNSAFE.sub("_", base).strip(" .") or "image"
    return base[:120]


@dataclass(frozen=True)
class PreparedImage:
    new: NewImage
    data: bytes  # de-identified bytes (the blob)
    warnings: tuple[str, ...]


def _ingest(data: bytes, name: str, settings: Settings) -> IngestedImage:
    from medlens.imaging.ingest import ingest

    try:
        return ingest(data, name=name, max_pixels=settings.max_image_pixels)  # type: ignore[call-arg]
    except TypeError:  # an ingest without the keyword: it applies its own cap
        return ingest(data, name=name)


def _gate(ingested: IngestedImage, settings: Settings) -> list[str]:
    """Refuse what is not a frontal chest X-ray (raises ImageRefused); returns warnings."""
    import medlens.imaging as imaging

    gate = getattr(imaging, "gate_chest_xray", None)
    if gate is None:
        return []
    result = gate(ingested)
    return list(getattr(result, "warnings", ()) or ())


def _png_bytes(ingested: IngestedImage) -> bytes:
    from medlens.imaging.deid import strip_raster

    return strip_raster(ingested.image)  # pixels only: no EXIF, text chunks, ICC or XMP


def _deid_dicom(data: bytes, name: str, settings: Settings) -> tuple[bytes, list[str]]:
    from medlens.imaging.deid import DeidPolicy, deidentify_bytes

    blob, result = deidentify_bytes(data, DeidPolicy.from_settings(settings), name=name)
    return blob, list(result.warnings)


def prepare(data: bytes, filename: str | None, settings: Settings) -> PreparedImage:
    name = safe_filename(filename)
    ingested = _ingest(data, name, settings)
    warnings = list(ingested.warnings)
    warnings += _gate(ingested, settings)
    if ingested.format == "dicom":
        blob, deid_warnings = _deid_dicom(data, name, settings)
        warnings += deid_warnings
        fmt = "dicom"
    else:
        blob, fmt = _png_bytes(ingested), "png"
    import hashlib

    meta = ingested.metadata
    metadata: dict[str, Any] = {
        "modality": meta.modality, "body_part": meta.body_part,
        "view_position": meta.view_position, "rows": meta.rows, "columns": meta.columns,
        "frames": meta.frames, "source_format": ingested.format,
        "description": meta.description, "warnings": warnings,
    }
    new = NewImage(
        sha256=hashlib.sha256(blob).hexdigest(),
        pixel_sha256=ingested.pixel_sha256,
        format=fmt,
        filename=name,
        metadata={k: v for k, v in metadata.items() if v not in (None, [], "")},
    )
    return PreparedImage(new=new, data=blob, warnings=tuple(warnings))

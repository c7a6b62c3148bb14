"""Upload intake: bytes → decoded, gated, de-identified image ready for the store.

The original upload is never written anywhere: it is decoded in memory (which is what
catches truncated files at upload time), checked by the chest X-ray gate, then
de-identified; only the de-identified bytes become a blob. PNG/JPEG are re-encoded from
their decoded pixels as PNG, which drops EXIF, text chunks and ICC profiles.
"""

from __future__ import annotations

import hashlib
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
    """One pass: decode, validate and (with the policy) de-identify before any metadata
    is read, so descriptions and tags shown later come from the de-identified data."""
    from medlens.imaging.deid import DeidPolicy
    from medlens.imaging.ingest import ingest

    return ingest(
        data,
        name=name,
        max_pixels=settings.max_image_pixels,
        deid=DeidPolicy.from_settings(settings),
    )


def _gate(ingested: IngestedImage) -> list[str]:
    """Refuse what is plainly no chest X-ray (CT/MR, blank, photo...) at upload, with the
    reason (ImageRefused → 422). The job runs the gate again with the image encoder."""
    from medlens.imaging.gate import require_chest_xray

    return list(require_chest_xray(ingested, encoder=None).warnings)


def _stored_bytes(ingested: IngestedImage) -> bytes:
    if ingested.deidentified_bytes is None:  # never store what was not de-identified
        from medlens.errors import DeidentificationBlocked

        raise DeidentificationBlocked(
            f"{ingested.source_name or 'image'}: could not be de-identified, so it is not stored."
        )
    return ingested.deidentified_bytes


def prepare(data: bytes, filename: str | None, settings: Settings) -> PreparedImage:
    name = safe_filename(filename)
    ingested = _ingest(data, name, settings)
    warnings = list(ingested.warnings)
    warnings += _gate(ingested)
    blob = _stored_bytes(ingested)
    fmt = "dicom" if ingested.format == "dicom" else "png"  # PNG/JPEG are re-encoded as PNG

    meta = ingested.metadata
    metadata: dict[str, Any] = {
        "modality": meta.modality,
        "body_part": meta.body_part,
        "view_position": meta.view_position,
        "rows": meta.rows,
        "columns": meta.columns,
        "frames": meta.frames,
        "source_format": ingested.format,
        "description": meta.description,
        "warnings": warnings,
    }
    new = NewImage(
        sha256=hashlib.sha256(blob).hexdigest(),
        pixel_sha256=ingested.pixel_sha256,
        format=fmt,
        filename=name,
        metadata={k: v for k, v in metadata.items() if v not in (None, [], "")},
    )
    return PreparedImage(new=new, data=blob, warnings=tuple(warnings))

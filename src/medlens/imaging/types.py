"""Values produced by ingest."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image as PILImage

ImageFormat = Literal["png", "jpeg", "dicom"]


@dataclass(frozen=True)
class ImageMetadata:
    """What MedLens knows about an image beyond its pixels (never patient identity)."""

    modality: str | None = None  # DICOM Modality (CR, DX, CT, MR ...)
    body_part: str | None = None  # BodyPartExamined
    view_position: str | None = None  # PA, AP, LL ...
    photometric: str | None = None
    bits_stored: int | None = None
    rows: int = 0
    columns: int = 0
    frames: int = 1
    transfer_syntax: str | None = None
    study_uid: str | None = None  # already remapped when de-identified
    series_uid: str | None = None
    description: str | None = None  # untrusted free text (StudyDescription ...)
    extra: dict[str, Any] = field(default_factory=dict)
    sop_class: str | None = None  # SOP Class name (e.g. "Computed Radiography Image Storage")
    burned_in_annotation: str | None = None  # BurnedInAnnotation as found (YES/NO/None)
    patient_identity_removed: bool | None = None  # after de-identification (None: not done)
    window: tuple[float, float] | None = None  # (center, width) used, when the file had one


@dataclass(frozen=True)
class IngestedImage:
    """A decoded, validated image ready for preprocessing.

    `image` is display-ready 8-bit ("L" or "RGB"): DICOM already had modality LUT,
    VOI window, MONOCHROME1 inversion and full-range rescale applied.
    `sha256` hashes the input bytes; `pixel_sha256` the decoded pixels (cache key).
    """

    image: PILImage.Image
    format: ImageFormat
    sha256: str
    pixel_sha256: str
    metadata: ImageMetadata
    warnings: tuple[str, ...] = ()
    volume: np.ndarray | None = None  # (slices, H, W, 3) uint8 for CT/MR series
    source_name: str | None = None
    # What may be stored: the de-identified DICOM, or PNG re-encoded without EXIF/text.
    # Set only when ingest ran with a DeidPolicy.
    deidentified_bytes: bytes | None = None
    deid_summary: dict[str, int] = field(default_factory=dict)  # action -> count
    # Greyscale DICOM, with ingest(keep_values=True): modality-LUT values at full bit
    # depth, so a stored copy can be re-windowed without decoding the file again.
    values: np.ndarray | None = None
    # The part of `warnings` about the decoded pixels themselves (not the upload's
    # de-identification notes): what a job working from the stored pixels reports.
    pixel_warnings: tuple[str, ...] = ()

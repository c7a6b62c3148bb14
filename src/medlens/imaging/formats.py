"""File type by signature (magic bytes), never by file name or extension.

Only PNG, JPEG and DICOM are opened. Everything else is refused with a message that
names what the bytes look like, so "scan.png" that is really a ZIP gets a useful 415.
"""

from __future__ import annotations

from typing import Literal

from medlens.errors import InvalidImage, UnsupportedImageType

Kind = Literal["png", "jpeg", "dicom"]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
DICM_OFFSET = 128

# Signatures of things people upload by mistake: named in the refusal.
_KNOWN_OTHERS: tuple[tuple[bytes, int, str], ...] = (
    (b"PK\x03\x04", 0, "a ZIP archive"),
    (b"PK\x05\x06", 0, "an empty ZIP archive"),
    (b"II*\x00", 0, "a TIFF image"),
    (b"MM\x00*", 0, "a TIFF image"),
    (b"GIF87a", 0, "a GIF image"),
    (b"GIF89a", 0, "a GIF image"),
    (b"BM", 0, "a BMP image"),
    (b"%PDF", 0, "a PDF document"),
    (b"\x1f\x8b", 0, "a gzip file"),
    (b"\x00\x00\x00\x0cjP  ", 0, "a bare JPEG 2000 file (wrap it in DICOM or convert to PNG)"),
    (b"\xff\x4f\xff\x51", 0, "a bare JPEG 2000 codestream"),
    (b"RIFF", 0, "a RIFF (WebP/AVI/WAV) file"),
    (b"\x7fELF", 0, "an executable"),
)


def sniff(data: bytes, name: str | None = None) -> Kind:
    """Return the kind of image the bytes hold or raise UnsupportedImageType."""
    label = name or "input"
    if not data:
        raise InvalidImage(f"{label}: the file is empty.")
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if len(data) >= DICM_OFFSET + 4 and data[DICM_OFFSET : DICM_OFFSET + 4] == b"DICM":
        return "dicom"
    if looks_like_raw_dicom(data):
        return "dicom"
    raise UnsupportedImageType(f"{label}: {describe(data)}; only PNG, JPEG and DICOM are accepted.")


def describe(data: bytes) -> str:
    for magic, offset, what in _KNOWN_OTHERS:
        if data[offset : offset + len(magic)] == magic:
            return f"this is {what}, not a medical image"
    head = data[:512].lstrip().lower()
    if head.startswith(b"<?xml") or b"<svg" in head:
        return "this is SVG/XML text, not a medical image"
    if head.startswith((b"<!doctype html", b"<html")):
        return "this is an HTML page, not a medical image"
    return "this is not a PNG, JPEG or DICOM file"


def looks_like_raw_dicom(data: bytes) -> bool:
    """A DICOM data set without the 128-byte preamble and 'DICM' (old ACR-NEMA style).

    Cheap structural check first (the first element is group 0002 or 0008 with a plausible
    VR or length), then a real parse with pydicom; random bytes must not pass.
    """
    if len(data) < 16:
        return False
    # Explicit VR Big Endian (retired, but still in archives) stores the group big-endian.
    order = next((o for o in ("little", "big") if _first_group(data, o)), None)
    if order is None:
        return False
    vr = data[4:6]
    explicit = vr.isalpha() and vr.isupper()
    if not explicit:
        length = int.from_bytes(data[4:8], order)
        if length > len(data):
            return False
    return _parses_as_dicom(data)


def _first_group(data: bytes, order: Literal["little", "big"]) -> bool:
    return int.from_bytes(data[0:2], order) in (0x0002, 0x0008)


def _parses_as_dicom(data: bytes) -> bool:
    import io
    import warnings

    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
            # A real data set has some identifying structure; garbage parsed with
            # force=True yields odd tags and raises on access or has none of these.
            keys = {"SOPClassUID", "Modality", "StudyInstanceUID", "SOPInstanceUID"}
            found = sum(1 for k in keys if k in ds)
            return found >= 2 and len(ds) >= 4
    except Exception:
        return False

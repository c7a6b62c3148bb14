"""Generated images for the imaging tests: DICOM through pydicom's real writer
(`Dataset.set_pixel_data`, file meta), PNG/JPEG through Pillow, hostile bytes by hand."""

from __future__ import annotations

import io
import struct
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    CTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)

STUDY_UID = "1.2.826.0.1.3680043.8.498.1"


def make_dicom(
    arr: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    modality: str = "CR",
    sop_class: str = ComputedRadiographyImageStorage,
    **tags: Any,
) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPClassUID = sop_class
    ds.Modality = modality
    ds.StudyInstanceUID = STUDY_UID
    ds.SeriesInstanceUID = STUDY_UID + ".2"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PID-12345"
    if bits_stored is None:
        bits_stored = 8 if arr.dtype == np.uint8 else 16
    ds.set_pixel_data(arr, photometric, bits_stored)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for key, value in tags.items():
        setattr(ds, key, value)
    return ds


def dicom_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def png_bytes(img: Image.Image, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def jpeg_bytes(img: Image.Image, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90, **kw)
    return buf.getvalue()


def gradient(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return ((x * 3 + y * 5) % 256).astype(np.uint8)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width×height, with a tiny (invalid) IDAT: a bomb header."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
        + chunk(b"IEND", b"")
    )


def _elem(group: int, elem: int, vr: bytes, value: bytes) -> bytes:
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT", b"UC", b"UR"):
        return struct.pack("<HH2sHI", group, elem, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr, len(value)) + value


def deep_nested_dicom(depth: int, *, undefined_length: bool = True) -> bytes:
    """A valid header followed by ContentSequence items nested `depth` deep."""
    base = make_dicom(np.zeros((8, 8), np.uint8), modality="SR")
    del base.PixelData
    for key in (
        "Rows",
        "Columns",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
        "PixelRepresentation",
        "SamplesPerPixel",
        "PhotometricInterpretation",
    ):
        if key in base:
            delattr(base, key)
    head = dicom_bytes(base)
    item_tag = struct.pack("<HH", 0xFFFE, 0xE000)
    if undefined_length:
        open_seq = struct.pack("<HH2sHI", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFFF)
        open_item = item_tag + struct.pack("<I", 0xFFFFFFFF)
        close_item = struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
        close_seq = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
        body = (open_seq + open_item) * depth + (close_item + close_seq) * depth
    else:
        inner = _elem(0x0040, 0xA040, b"CS", b"TEXT")
        for _ in range(depth):
            item = item_tag + struct.pack("<I", len(inner)) + inner
            inner = _elem(0x0040, 0xA730, b"SQ", item)
        body = inner
    return head + body


@pytest.fixture(scope="session")
def mk() -> SimpleNamespace:
    return SimpleNamespace(
        dicom=make_dicom,
        dicom_bytes=dicom_bytes,
        png=png_bytes,
        jpeg=jpeg_bytes,
        gradient=gradient,
        png_header_only=png_header_only,
        deep=deep_nested_dicom,
        elem=_elem,
        CT=CTImageStorage,
        uid=generate_uid,
    )

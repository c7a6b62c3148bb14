"""Signature sniffing (imaging.formats): DICOM without preamble/meta is still DICOM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom.data
import pytest

from medlens.errors import NoPixelData, UnsupportedImageType
from medlens.imaging.formats import looks_like_raw_dicom, sniff
from medlens.imaging.ingest import ingest


@pytest.mark.parametrize("name", ["ExplVR_BigEndNoMeta.dcm", "ExplVR_LitEndNoMeta.dcm"])
def test_dicom_without_preamble_or_meta_is_dicom(name: str) -> None:
    path = pydicom.data.get_testdata_file(name)
    data = Path(path).read_bytes()
    assert data[128:132] != b"DICM" and sniff(data, name) == "dicom"
    # Recognised, then refused for what it really is (an RT plan holds no image).
    with pytest.raises(NoPixelData, match="no pixel data"):
        ingest(data, name=name)


def test_big_endian_group_with_junk_is_not_dicom() -> None:
    junk = b"\x00\x08\x00\x05CS\x00\x0aISO_IR 100" + bytes(300)
    assert not looks_like_raw_dicom(junk)
    with pytest.raises(UnsupportedImageType, match="not a PNG, JPEG or DICOM"):
        sniff(junk, "junk")
    rng = np.random.default_rng(7)
    for _ in range(50):  # random bytes behind a big-endian group 0008 never pass
        tail = bytes(rng.integers(0, 256, 400, dtype=np.uint8))
        assert not looks_like_raw_dicom(b"\x00\x08" + tail)

"""Property test: mutated PNG/JPEG/DICOM bytes give an image or a MedLensError — never
another exception — within bounded time and memory."""

from __future__ import annotations

import os
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from medlens.errors import MedLensError
from medlens.imaging.ingest import ingest
from medlens.imaging.types import IngestedImage

MAX_SECONDS = 5.0
MAX_PEAK_BYTES = 200 * 2**20
MAX_PIXELS = 4_000_000
# Longer local runs: MEDLENS_FUZZ_EXAMPLES=5000 pytest tests/imaging/test_imaging_fuzz.py
EXAMPLES = int(os.environ.get("MEDLENS_FUZZ_EXAMPLES", "150"))


@pytest.fixture(scope="module")
def seeds(mk, dicom_dir: Path) -> dict[str, bytes]:
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, RLELossless

    grad = mk.gradient(48, 40)
    rgb = np.stack([grad, grad[::-1], 255 - grad], axis=-1)
    ds = mk.dicom(
        np.arange(32 * 32, dtype=np.uint16).reshape(32, 32),
        bits_stored=12,
        photometric="MONOCHROME1",
        WindowCenter=500,
        WindowWidth=800,
    )
    rle = mk.dicom(np.arange(24 * 24, dtype=np.uint16).reshape(24, 24))
    rle.compress(RLELossless)
    j2k = mk.dicom(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) % 4000, bits_stored=12)
    j2k.compress(JPEG2000Lossless)
    jpeg_dcm = mk.dicom(grad)  # JPEG baseline frame from Pillow, encapsulated by hand
    jpeg_dcm.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    jpeg_dcm.PixelData = encapsulate([mk.jpeg(Image.fromarray(grad, "L"))])
    jpeg_dcm["PixelData"].VR = "OB"
    jpeg_dcm["PixelData"].is_undefined_length = True
    return {
        "dicom-j2k": mk.dicom_bytes(j2k),
        "dicom-jpeg": mk.dicom_bytes(jpeg_dcm),
        "png": mk.png(Image.fromarray(grad, "L")),
        "png16": mk.png(Image.fromarray(grad.astype(np.uint16) * 200)),
        "png-rgb": mk.png(Image.fromarray(rgb, "RGB")),
        "jpeg": mk.jpeg(Image.fromarray(grad, "L")),
        "dicom": mk.dicom_bytes(ds),
        "dicom-rle": mk.dicom_bytes(rle),
        "mr": (dicom_dir / "MR_small.dcm").read_bytes(),
    }


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("set32"), st.integers(0, 10**6), st.integers(0, 2**32 - 1)),
)


def _mutate(data: bytes, ops: list[tuple]) -> bytes:
    buf = bytearray(data)
    for op, pos, arg in ops:
        if not buf:
            break
        i = pos % len(buf)
        if op == "flip":
            buf[i] ^= arg
        elif op == "truncate":
            del buf[max(1, i) :]
        elif op == "insert":
            buf[i:i] = arg
        else:  # overwrite 4 bytes with a (often huge) little-endian length/size
            buf[i : i + 4] = int(arg).to_bytes(4, "little")
    return bytes(buf)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    kind=st.sampled_from(
        ["png", "png16", "png-rgb", "jpeg", "dicom", "dicom-rle", "dicom-j2k", "dicom-jpeg", "mr"]
    ),
    ops=st.lists(mutation, min_size=1, max_size=4),
)
def test_mutated_inputs_never_escape(seeds: dict[str, bytes], kind: str, ops: list) -> None:
    data = _mutate(seeds[kind], ops)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        result = ingest(data, max_pixels=MAX_PIXELS)
    except MedLensError:
        result = None
    finally:
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < MAX_SECONDS, (kind, ops, elapsed)
    assert peak < MAX_PEAK_BYTES, (kind, ops, peak)
    if result is not None:
        assert isinstance(result, IngestedImage)
        assert result.image.mode in ("L", "RGB")
        assert result.image.width * result.image.height <= MAX_PIXELS


def test_unmutated_seeds_decode(seeds: dict[str, bytes]) -> None:
    for kind, data in seeds.items():
        assert ingest(data).image.size[0] > 0, kind

"""PNG/JPEG ingest: modes, EXIF, metadata stripping, bombs, truncation, wrong formats."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medlens.errors import ImageTooLarge, InvalidImage, TruncatedImage, UnsupportedImageType
from medlens.imaging.formats import sniff
from medlens.imaging.ingest import ingest


def test_every_shared_cxr_ingests(shared_data: Path) -> None:
    files = sorted((shared_data / "cxr").glob("*/images/*"))
    assert len(files) >= 200
    for f in files:
        img = ingest(f)
        assert img.format in ("png", "jpeg")
        assert img.image.mode in ("L", "RGB")
        assert img.image.size[0] >= 64 and img.image.size[1] >= 64
        assert not img.image.info  # nothing carried over from the file


def test_png_8bit_grey_is_unchanged(mk) -> None:
    arr = mk.gradient(20, 30)
    img = ingest(mk.png(Image.fromarray(arr, "L")))
    assert img.image.mode == "L" and np.array_equal(np.asarray(img.image), arr)


def test_png_16bit_grey_rescaled_to_full_range(mk) -> None:
    arr = np.array([[1000, 2000, 3000]], np.uint16).repeat(2, 0)
    img = ingest(mk.png(Image.fromarray(arr)))
    assert np.asarray(img.image)[0].tolist() == [0, 128, 255]  # 127.5 → round half even
    assert img.metadata.bits_stored == 16


def test_png_palette_and_alpha(mk) -> None:
    pal = Image.fromarray(mk.gradient(10, 10), "L").convert("P")
    assert ingest(mk.png(pal)).image.mode == "L"
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    out = np.asarray(ingest(mk.png(rgba)).image)
    assert out.shape == (10, 10, 3)
    assert out[5, 5].tolist() == [0, 0, 0]  # transparent → black background
    assert out[0, 0].tolist() == [0, 0, 255]


def test_grey_stored_as_rgb_jpeg_becomes_l(mk) -> None:
    rgb = Image.fromarray(mk.gradient(32, 32), "L").convert("RGB")
    img = ingest(mk.jpeg(rgb))
    assert img.format == "jpeg" and img.image.mode == "L"


def test_exif_orientation_applied_and_metadata_dropped(mk) -> None:
    arr = np.zeros((20, 40), np.uint8)
    arr[:, :5] = 255  # a bright band on the left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    exif[0x010E] = "Jane Doe chest film"  # ImageDescription
    data = mk.jpeg(Image.fromarray(arr, "L"), exif=exif.tobytes())
    img = ingest(data, deid=_policy())
    assert img.image.size == (20, 40)  # width/height swapped by the rotation
    top = np.asarray(img.image)[:5].mean()
    bottom = np.asarray(img.image)[-5:].mean()
    assert top > 200 > bottom  # left edge moved to the top
    assert any("metadata" in w for w in img.warnings)
    stored = img.deidentified_bytes
    assert stored is not None and stored.startswith(b"\x89PNG")
    assert b"Jane Doe" not in stored and b"Exif" not in stored and b"eXIf" not in stored


def test_png_text_chunks_are_not_stored(mk) -> None:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("PatientName", "Doe^Jane")
    info.add_itxt("Comment", "MRN 99887766")
    img = ingest(mk.png(Image.fromarray(mk.gradient(16, 16), "L"), pnginfo=info), deid=_policy())
    stored = img.deidentified_bytes or b""
    for marker in (b"Doe^Jane", b"99887766", b"tEXt", b"iTXt", b"zTXt"):
        assert marker not in stored


@pytest.mark.parametrize("side", [20_000, 10_000])
def test_bomb_headers_rejected_before_decoding(mk, side: int) -> None:
    data = mk.png_header_only(side, side)
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLarge) as err:
            ingest(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert err.value.http_status == 413
    assert peak < 100 * 2**20


def test_max_pixels_kwarg(mk) -> None:
    data = mk.png(Image.fromarray(mk.gradient(100, 100), "L"))
    with pytest.raises(ImageTooLarge, match="exceeds the limit"):
        ingest(data, max_pixels=5_000)
    assert ingest(data, max_pixels=10_000).image.size == (100, 100)


def test_pillow_bomb_warning_is_an_error(mk, monkeypatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)  # warns above, errors above 2×
    data = mk.png(Image.fromarray(mk.gradient(40, 40), "L"))  # 1,600 px: warning zone
    with pytest.raises(ImageTooLarge, match="decompression bomb"):
        ingest(data, max_pixels=10**9)


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_truncated_image_is_422(mk, fmt: str, shared_data: Path) -> None:
    rng = np.random.default_rng(0)
    noisy = Image.fromarray(rng.integers(0, 255, (128, 128), dtype=np.uint8), "L")
    data = (mk.png if fmt == "png" else mk.jpeg)(noisy)
    with pytest.raises(TruncatedImage, match="image truncated") as err:
        ingest(data[: len(data) // 2])
    assert err.value.http_status == 422
    from PIL import ImageFile

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize(
    "data,what",
    [
        (b"PK\x03\x04" + b"\x00" * 100, "ZIP"),
        (b"II*\x00" + b"\x00" * 100, "TIFF"),
        (b"MM\x00*" + b"\x00" * 100, "TIFF"),
        (b"GIF89a" + b"\x00" * 100, "GIF"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>', "SVG"),
        (b"<svg onload=alert(1)></svg>", "SVG"),
        (b"%PDF-1.7" + b"\x00" * 100, "PDF"),
        (b"hello, world" * 20, "not a PNG, JPEG or DICOM"),
    ],
)
def test_other_formats_are_415_by_signature(tmp_path: Path, data: bytes, what: str) -> None:
    path = tmp_path / "scan.png"  # the extension lies
    path.write_bytes(data)
    with pytest.raises(UnsupportedImageType, match=what) as err:
        ingest(path)
    assert err.value.http_status == 415


def test_real_gif_and_tiff_refused(mk) -> None:
    for fmt in ("GIF", "TIFF", "BMP", "WEBP"):
        buf = io.BytesIO()
        Image.fromarray(mk.gradient(16, 16), "L").save(buf, format=fmt)
        with pytest.raises(UnsupportedImageType):
            ingest(buf.getvalue())


def test_png_named_dcm_is_still_png(tmp_path: Path, mk) -> None:
    path = tmp_path / "image.dcm"
    path.write_bytes(mk.png(Image.fromarray(mk.gradient(16, 16), "L")))
    assert ingest(path).format == "png"


def test_empty_and_random_bytes() -> None:
    with pytest.raises(InvalidImage):
        ingest(b"")
    rng = np.random.default_rng(1)
    for _ in range(20):
        junk = bytes(rng.integers(0, 256, 400, dtype=np.uint8))
        with pytest.raises(InvalidImage):
            ingest(junk)
    # Looks like the start of a raw DICOM group 0008 element but is not DICOM.
    assert_refused = b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100" + bytes(300)
    with pytest.raises(UnsupportedImageType):
        sniff(assert_refused)


def _policy():
    from medlens.imaging.deid import DeidPolicy

    return DeidPolicy(secret=b"test-secret")

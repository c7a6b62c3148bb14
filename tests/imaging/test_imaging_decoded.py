"""Decoded pixels kept beside a stored image: lossless round trip, windowing, the cache."""

from __future__ import annotations

import io
import threading

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medlens.errors import InvalidImage
from medlens.imaging.decoded import DecodedCache, DecodedImage, compact
from medlens.imaging.dicom_decode import window_display
from medlens.imaging.ingest import ingest


def _dicom(photometric: str = "MONOCHROME2", slope: float = 1.0, window: bool = True) -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.1", generate_uid()
    ds.Modality, ds.BodyPartExamined = "CR", "CHEST"
    yy, xx = np.mgrid[0:64, 0:80]
    ds.set_pixel_data(((yy * 13 + xx * 7) % 4096).astype(np.uint16), photometric, 12)
    ds.RescaleSlope, ds.RescaleIntercept = slope, -1024
    if window:
        ds.WindowCenter, ds.WindowWidth = 1000, 2000
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


@pytest.mark.parametrize("slope", [1.0, 0.5])
def test_dicom_copy_round_trips_losslessly_with_its_values(slope):
    img = ingest(_dicom(slope=slope), keep_values=True)
    decoded = DecodedImage.from_ingested(img)
    back = DecodedImage.from_bytes(decoded.to_bytes())
    assert np.array_equal(back.display, np.asarray(img.image))
    assert np.array_equal(back.values, img.values) and back.metadata == img.metadata
    assert back.pixel_sha256 == img.pixel_sha256 and back.format == "dicom"
    again = back.to_ingested(sha256="ab" * 32, source_name="x.dcm")
    assert np.array_equal(np.asarray(again.image), np.asarray(img.image))
    assert (again.sha256, again.source_name, again.values) == ("ab" * 32, "x.dcm", None)
    assert back.window_defaults() == {
        "min": float(img.values.min()), "max": float(img.values.max()),
        "center": 1000.0, "width": 2000.0,
    }  # fmt: skip


def test_without_keep_values_ingest_holds_no_values():
    assert ingest(_dicom()).values is None


def test_colour_png_copy_round_trips_and_has_no_window(tmp_path):
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="PNG")
    img = ingest(buf.getvalue())
    back = DecodedImage.from_bytes(DecodedImage.from_ingested(img).to_bytes())
    assert np.array_equal(back.display, rgb) and back.window_defaults() is None
    assert back.rendered(10.0, 20.0) is back.display  # a window never applies to colour
    assert back.to_ingested(sha256="0" * 64, source_name=None).image.mode == "RGB"


def test_window_renders_from_full_depth_values_and_inverts_monochrome1():
    mono2 = DecodedImage.from_ingested(ingest(_dicom(window=False), keep_values=True))
    mono1 = DecodedImage.from_ingested(
        ingest(_dicom("MONOCHROME1", window=False), keep_values=True)
    )
    narrow, wide = mono2.rendered(0.0, 100.0), mono2.rendered(1000.0, 4096.0)
    assert narrow.dtype == np.uint8 and not np.array_equal(narrow, wide)
    assert np.array_equal(mono1.rendered(0.0, 100.0), 255 - narrow)
    # The default window over the whole range is the default display itself.
    lo, hi = float(mono2.values.min()), float(mono2.values.max())
    full = window_display(mono2.values, (lo + hi) / 2, hi - lo, "MONOCHROME2")
    assert np.abs(full.astype(int) - mono2.display.astype(int)).max() <= 1
    assert mono2.rendered() is mono2.display


def test_compact_is_exact_and_small():
    for values, dtype in (([0.0, 255.0], np.uint8), ([-1024.0, 3071.0], np.int16),
                          ([0.0, 40000.0], np.uint16), ([-1.0, 70000.0], np.int32),
                          ([0.5, 1.0], np.float64)):  # fmt: skip
        arr = np.array(values)
        assert compact(arr).dtype == dtype and np.array_equal(compact(arr), arr)


def test_a_damaged_copy_is_an_invalid_image():
    with pytest.raises(InvalidImage):
        DecodedImage.from_bytes(b"PK\x03\x04 nothing")


def _item(n_bytes: int) -> DecodedImage:
    from medlens.imaging.types import ImageMetadata

    return DecodedImage(np.zeros(n_bytes, np.uint8), "png", "0" * 64, ImageMetadata())


def test_cache_is_lru_and_bounded_in_items_and_bytes():
    cache = DecodedCache(max_items=3, max_bytes=1000)
    for key in "abc":
        cache.put(key, _item(100))
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("d", _item(100))
    assert cache.get("b") is None and len(cache) == 3
    cache.put("e", _item(900))
    assert cache.size_bytes <= 1000 and cache.get("e") is not None
    cache.put("huge", _item(5000))  # larger than the whole cache: not kept
    assert cache.get("huge") is None and cache.get("e") is not None
    cache.discard("e")
    assert cache.size_bytes == sum(
        i.nbytes for i in (cache.get(k) for k in "acd") if i is not None
    )


def test_cache_is_safe_across_threads():
    cache = DecodedCache(max_items=8, max_bytes=10_000)

    def work(n: int) -> None:
        for i in range(200):
            cache.put(f"{n}-{i % 12}", _item(100))
            cache.get(f"{(n + 1) % 4}-{i % 12}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) <= 8 and cache.size_bytes == 100 * len(cache)


def test_cached_pixels_are_read_only():
    decoded = DecodedImage.from_ingested(ingest(_dicom(), keep_values=True))
    with pytest.raises(ValueError):
        decoded.display[0, 0] = 1

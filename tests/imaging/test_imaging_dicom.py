"""DICOM ingest over every shared file and generated edge cases."""

from __future__ import annotations

import csv
import dataclasses
import io
import struct
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import UID, RLELossless

from medlens.errors import (
    ImageTooLarge,
    InvalidImage,
    MedLensError,
    NoPixelData,
    TruncatedImage,
    UnsupportedDicom,
)
from medlens.imaging.ingest import ingest, probe

# What each shared file must give: decoded (mode, width, height) or the error type.
EXPECTED = {
    "RG1_J2KI.dcm": ("L", 1841, 1955),
    "CT_small.dcm": ("L", 128, 128),
    "MR_small.dcm": ("L", 64, 64),
    "MR_small_RLE.dcm": ("L", 64, 64),
    "examples_overlay.dcm": ("L", 484, 300),
    "JPEG-lossy.dcm": UnsupportedDicom,
    "test-SR.dcm": NoPixelData,
}


def test_every_shared_dicom_file_is_covered(dicom_dir: Path) -> None:
    assert {p.name for p in dicom_dir.glob("*.dcm")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shared_dicom_decodes_or_fails_clearly(dicom_dir: Path, name: str) -> None:
    want = EXPECTED[name]
    if isinstance(want, tuple):
        img = ingest(dicom_dir / name)
        assert (img.image.mode, *img.image.size) == want
        assert img.format == "dicom"
        arr = np.asarray(img.image)
        assert arr.dtype == np.uint8 and arr.min() == 0 and arr.max() == 255  # full range
    else:
        with pytest.raises(want) as err:
            ingest(dicom_dir / name)
        assert name in str(err.value)


def test_metadata_matches_index_and_holds_no_identity(dicom_dir: Path) -> None:
    rows = list(csv.DictReader((dicom_dir / "dicom_index.csv").open()))
    for row in rows:
        meta = probe(dicom_dir / row["file"])
        assert (meta.modality or "") == row["modality"]
        assert (meta.body_part or "") == row["body_part"]
        assert (meta.view_position or "") == row["view_position"]
        assert str(meta.transfer_syntax) == row["transfer_syntax_uid"]
        flat = repr(dataclasses.asdict(meta))
        for key in (
            "patient_name",
            "patient_id",
            "patient_birth_date",
            "institution",
            "referring_physician",
            "accession_number",
        ):
            if row[key]:
                assert row[key] not in flat, (row["file"], key)


def test_rg1_monochrome1_is_inverted_lungs_dark_bones_bright(dicom_dir: Path) -> None:
    img = ingest(dicom_dir / "RG1_J2KI.dcm")
    assert img.metadata.photometric == "MONOCHROME1"
    a = np.asarray(img.image, dtype=float)
    h, w = a.shape
    lung_r = a[int(h * 0.3) : int(h * 0.5), int(w * 0.15) : int(w * 0.35)].mean()
    lung_l = a[int(h * 0.3) : int(h * 0.5), int(w * 0.62) : int(w * 0.82)].mean()
    spine = a[int(h * 0.3) : int(h * 0.6), int(w * 0.47) : int(w * 0.53)].mean()
    # Both lung fields are darker than the mediastinum/spine by a wide margin.
    assert spine - lung_r > 40 and spine - lung_l > 40


def test_rle_and_uncompressed_decode_identically(dicom_dir: Path) -> None:
    a = np.asarray(ingest(dicom_dir / "MR_small.dcm").image)
    b = np.asarray(ingest(dicom_dir / "MR_small_RLE.dcm").image)
    assert np.array_equal(a, b)


def test_jpeg_lossy_error_names_the_tool_that_decodes_it(dicom_dir: Path) -> None:
    with pytest.raises(UnsupportedDicom, match="dcmtk"):
        ingest(dicom_dir / "JPEG-lossy.dcm")


def test_monochrome1_12bit_window_from_first_principles(mk) -> None:
    values = np.array([[0, 1000, 1500, 2000, 2500, 3000, 4095]], np.uint16).repeat(4, 0)
    ds = mk.dicom(
        values, photometric="MONOCHROME1", bits_stored=12, WindowCenter=2000, WindowWidth=2000
    )
    img = ingest(mk.dicom_bytes(ds))
    got = np.asarray(img.image)[0].astype(int)
    # PS3.3 C.11.2.1.2.1 linear window (c=2000, w=2000), output rescaled to 0..255,
    # then inverted (MONOCHROME1): low stored values are white.
    c, w = 2000 - 0.5, 2000 - 1
    frac = np.clip(((values[0] - c) / w + 0.5), 0, 1)
    frac[values[0] <= c - w / 2] = 0
    frac[values[0] > c + w / 2] = 1
    want = 255 - np.rint(frac * 255)
    assert np.abs(got - want).max() <= 1
    assert got[0] == 255 and got[-1] == 0
    assert img.metadata.window == (2000.0, 2000.0)


def test_modality_lut_then_minmax_without_window(mk) -> None:
    values = np.array([[0, 50, 200]], np.uint16).repeat(2, 0)
    ds = mk.dicom(values, bits_stored=12, RescaleSlope=2, RescaleIntercept=-100)
    got = np.asarray(ingest(mk.dicom_bytes(ds)).image)[0]
    assert got.tolist() == [0, 64, 255]  # (-100, 0, 300) → 255·100/400 = 63.75


def test_rgb_dicom(mk) -> None:
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[:, 8:, 2] = 90
    img = ingest(mk.dicom_bytes(mk.dicom(rgb, photometric="RGB")))
    assert img.image.mode == "RGB"
    assert np.array_equal(np.asarray(img.image), rgb)


def test_ybr_full_dicom_is_converted_to_rgb(mk) -> None:
    from pydicom.pixels import convert_color_space

    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 180, 60, 30
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    img = ingest(mk.dicom_bytes(mk.dicom(ybr, photometric="YBR_FULL")))
    assert img.image.mode == "RGB"
    assert np.abs(np.asarray(img.image).astype(int) - rgb).max() <= 2


def test_multiframe_radiograph_uses_first_frame_with_warning(mk) -> None:
    frames = np.stack([np.full((8, 8), v, np.uint8) for v in (10, 200, 90)])
    frames[:, 0, 0] = 0
    img = ingest(mk.dicom_bytes(mk.dicom(frames)))
    assert img.metadata.frames == 3
    assert any("frame 1 of 3" in w for w in img.warnings)
    assert np.asarray(img.image)[1, 1] == 255  # frame 1: 10 rescaled between 0 and 10


def test_multiframe_ct_becomes_three_window_volume(mk) -> None:
    hu = np.array([-1024, -135, 0, 20, 80, 215, 1024], np.int16)
    frames = np.stack([np.tile(hu, (7, 1)) for _ in range(4)])
    ds = mk.dicom(frames, modality="CT", sop_class=mk.CT, RescaleSlope=1, RescaleIntercept=0)
    img = ingest(mk.dicom_bytes(ds))
    assert img.volume is not None and img.volume.shape == (4, 7, 7, 3)
    row = img.volume[0, 0].astype(int)
    # R: (-1024, 1024); G: (-135, 215); B: (0, 80); 255·(v − lo)/(hi − lo), clipped.
    assert row[:, 0].tolist() == [0, 111, 128, 130, 137, 154, 255]
    assert row[:, 1].tolist() == [0, 0, 98, 113, 157, 255, 255]
    assert row[:, 2].tolist() == [0, 0, 0, 64, 255, 255, 255]


def test_no_pixel_data(mk) -> None:
    ds = mk.dicom(np.zeros((4, 4), np.uint8))
    del ds.PixelData
    with pytest.raises(NoPixelData):
        ingest(mk.dicom_bytes(ds))


def test_truncated_pixel_data_20kb_short_is_caught_at_ingest(mk) -> None:
    data = mk.dicom_bytes(mk.dicom(np.arange(200 * 200, dtype=np.uint16).reshape(200, 200)))
    with pytest.raises(TruncatedImage, match="truncated pixel data") as err:
        ingest(data[:-20_000])
    assert err.value.http_status == 422


def test_pixel_data_shorter_than_rows_columns_say(mk) -> None:
    ds = mk.dicom(np.zeros((200, 200), np.uint16))
    ds.PixelData = ds.PixelData[:-20_000]  # consistent element length, too few pixels
    with pytest.raises(TruncatedImage, match="20,000"):
        ingest(mk.dicom_bytes(ds))


def test_declared_element_length_beyond_end_of_file(mk) -> None:
    data = mk.dicom_bytes(mk.dicom(np.zeros((8, 8), np.uint8)))
    # A private OB element after the pixel data that claims 10 MB but holds 10 bytes.
    data += struct.pack("<HH2sHI", 0x7FE1, 0x1010, b"OB", 0, 10_000_000) + b"x" * 10
    with pytest.raises(InvalidImage, match="beyond the end of the file"):
        ingest(data)


@pytest.mark.parametrize("undefined", [True, False])
def test_deeply_nested_sequences_are_refused(mk, undefined: bool) -> None:
    depth = 10_000 if undefined else 100
    with pytest.raises(InvalidImage, match="nested"):
        ingest(mk.deep(depth, undefined_length=undefined))


def test_unknown_transfer_syntax_names_a_way_out(mk) -> None:
    ds = mk.dicom(np.zeros((8, 8), np.uint8))
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.100")  # MPEG2: no decoder
    ds["PixelData"].VR = "OB"
    data = _encapsulated(ds)
    with pytest.raises(UnsupportedDicom, match="no Python decoder"):
        ingest(data)


def _encapsulated(ds) -> bytes:
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate([b"\x00" * 64])
    ds["PixelData"].is_undefined_length = True
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_rle_generated_roundtrip(mk) -> None:
    arr = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 3
    ds = mk.dicom(arr, bits_stored=12)
    ds.compress(RLELossless)
    got = np.asarray(ingest(mk.dicom_bytes(ds)).image).astype(int)
    want = np.rint((arr - arr.min()) * 255.0 / (arr.max() - arr.min()))
    assert np.abs(got - want).max() == 0


@pytest.mark.parametrize("rows,cols,exc", [(0, 16, InvalidImage), (60000, 60000, ImageTooLarge)])
def test_absurd_dimensions(mk, rows: int, cols: int, exc: type) -> None:
    ds = mk.dicom(np.zeros((16, 16), np.uint8))
    ds.Rows, ds.Columns = rows, cols
    with pytest.raises(exc):
        ingest(mk.dicom_bytes(ds))


def test_raw_dicom_without_preamble(mk) -> None:
    from pydicom import dcmwrite
    from pydicom.dataset import FileMetaDataset

    ds = mk.dicom(mk.gradient(16, 16))
    ds.file_meta = FileMetaDataset()
    ds.preamble = None
    buf = io.BytesIO()
    dcmwrite(buf, ds, implicit_vr=True, little_endian=True)
    data = buf.getvalue()
    assert data[:2] == b"\x08\x00" and b"DICM" not in data[:200]
    img = ingest(data)
    assert img.format == "dicom" and img.image.size == (16, 16)


def test_only_medlens_errors_escape_on_garbage() -> None:
    for data in (b"\x08\x00" + b"\xff" * 300, b"\x00" * 200 + b"DICM", b"\x02\x00\x10\x00UI"):
        with pytest.raises(MedLensError):
            ingest(data)


def _j2k_dicom(rows: int, cols: int, siz: tuple[int, int] | None = None) -> bytes:
    from openjpeg import encode
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless

    cs = bytearray(encode(np.zeros((64, 64), np.uint8)))
    if siz is not None:  # rewrite Xsiz/Ysiz in the SIZ marker segment
        i = cs.find(b"\xff\x51")
        cs[i + 6 : i + 10] = siz[0].to_bytes(4, "big")
        cs[i + 10 : i + 14] = siz[1].to_bytes(4, "big")
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = "1.2.840.10008.5.1.4.1.1.1", "1.2.3", "CR"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation, ds.SamplesPerPixel = 7, 0, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = encapsulate([bytes(cs)])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_jpeg2000_bomb_refused_from_codestream_header() -> None:
    import time
    import tracemalloc

    assert ingest(_j2k_dicom(64, 64)).image.size == (64, 64)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ImageTooLarge, match="60000x60000"):
            ingest(_j2k_dicom(64, 64, siz=(60000, 60000)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 2 and peak < 50 * 2**20
    with pytest.raises(InvalidImage, match="Rows/Columns"):
        ingest(_j2k_dicom(32, 32))


def test_palette_colour_dicom_uses_its_lut(mk) -> None:
    idx = np.array([[0, 1, 2, 1]], np.uint8).repeat(3, 0)
    ds = mk.dicom(idx, photometric="PALETTE COLOR")
    red, green, blue = [65535, 0, 0], [0, 65535, 0], [0, 0, 32896]  # 32896/257 = 128
    for name, table in (("Red", red), ("Green", green), ("Blue", blue)):
        setattr(ds, f"{name}PaletteColorLookupTableDescriptor", [3, 0, 16])
        setattr(ds, f"{name}PaletteColorLookupTableData", np.array(table, "<u2").tobytes())
    img = ingest(mk.dicom_bytes(ds))
    assert img.image.mode == "RGB"
    assert np.asarray(img.image)[0].tolist() == [[255, 0, 0], [0, 255, 0], [0, 0, 128], [0, 255, 0]]


def test_truncated_encapsulated_pixel_data_is_truncation_not_missing(dicom_dir) -> None:
    # pydicom drops an encapsulated Pixel Data element that runs past the end of the file;
    # the user must hear "truncated", not "this object has no pixel data".
    data = (dicom_dir / "RG1_J2KI.dcm").read_bytes()
    with pytest.raises(TruncatedImage, match="truncated pixel data") as err:
        ingest(data[:-20_000])
    assert err.value.http_status == 422

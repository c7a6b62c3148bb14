"""Box answers: every format variant, 30+ malformed outputs, a hypothesis fuzz, and exact
coordinate round trips on portrait, landscape and DICOM (Rows != Columns) images."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from medlens.imaging.preprocess import pad_to_square
from medlens.tasks.interpret.grounding_parse import (
    norm_to_pixels,
    padded_offsets,
    parse_boxes,
    pixels_to_norm,
)

BOX = '{"box_2d": [100, 200, 300, 400], "label": "right lower lobe"}'


@pytest.mark.parametrize(
    "text",
    [
        f"```json\n[{BOX}]\n```",
        f"[{BOX}]",
        f"Here you are:\n```json\n[{BOX}]\n```\nDone.",
        f"<unused94>thinking about it<unused95>```json\n[{BOX}]\n```",
        f"```\n[{BOX}]\n```",
        BOX,
        '{"boxes": [' + BOX + "]}",
        f"[{BOX},]",
    ],
)
def test_format_variants_give_the_same_box(text: str) -> None:
    out = parse_boxes(text)
    assert [(b.label, b.norm) for b in out.boxes] == [("right lower lobe", (100, 200, 300, 400))]
    assert out.scale == "0-1000"


def test_zero_to_one_scale_is_detected_and_said() -> None:
    out = parse_boxes('[{"box_2d": [0.1, 0.2, 0.3, 0.4], "label": "heart"}]')
    assert out.scale == "0-1"
    assert out.boxes[0].norm == pytest.approx((100, 200, 300, 400))
    assert any("0-1" in w for w in out.warnings)


def test_swapped_corners_are_reordered_with_a_warning() -> None:
    out = parse_boxes('[{"box_2d": [300, 400, 100, 200], "label": "heart"}]')
    assert out.boxes[0].norm == (100, 200, 300, 400)
    assert "swapped" in out.boxes[0].warnings[0]


def test_out_of_range_values_are_clipped_with_a_warning() -> None:
    out = parse_boxes('[{"box_2d": [-20, 900, 300, 1200], "label": "heart"}]')
    assert out.boxes[0].norm == (0, 900, 300, 1000)
    assert "clipped" in out.boxes[0].warnings[0]


def test_truncated_list_salvages_complete_objects() -> None:
    out = parse_boxes(f'```json\n[{BOX}, {{"box_2d": [1, 2')
    assert len(out.boxes) == 1 and "salvaged" in out.warnings[0]


MALFORMED = [
    "",
    "   ",
    "no boxes here",
    "```json\n```",
    "[]",
    "{}",
    "null",
    "42",
    '"a string"',
    "[1, 2, 3]",
    '[{"label": "heart"}]',
    '[{"box_2d": [1, 2, 3], "label": "heart"}]',
    '[{"box_2d": [1, 2, 3, 4, 5], "label": "heart"}]',
    '[{"box_2d": "1,2,3,4", "label": "heart"}]',
    '[{"box_2d": [1, 2, "x", 4], "label": "heart"}]',
    '[{"box_2d": [1, 2, null, 4], "label": "heart"}]',
    '[{"box_2d": [1, 2, 3, 4]}]',
    '[{"box_2d": [1, 2, 3, 4], "label": ""}]',
    '[{"box_2d": [1, 2, 3, 4], "label": 7}]',
    '[{"box_2d": [100, 100, 100, 400], "label": "flat"}]',
    '[{"box_2d": [-500, -500, -10, -10], "label": "off image"}]',
    '[{"box_2d": [2000, 2000, 3000, 3000], "label": "off image"}]',
    '[{"box_2d": [true, false, true, true], "label": "bools"}]',
    '[{"box_2d": [1e400, 2, 3, 4], "label": "inf"}]',
    '[{"box_2d": {"y0": 1}, "label": "dict box"}]',
    "[[[[[[[[[[]]]]]]]]]]",
    '[{"box_2d": [1, 2, 3, 4], "label": "a"' + "}" * 50,
    "<unused94>only a thought, never closed",
    "<unused94>thought<unused95>",
    "```json\n[{'box_2d': [1, 2, 3, 4], 'label': 'quoted'}\n```",
    '[{"box_2d": [NaN, 2, 3, 4], "label": "nan"}]',
    "\x00\x01\x02",
    '[{"box_2d": [1, 2, 3, 4], "label": "x"}, "junk", 5, null]',
    "```json\n[" + ",".join([BOX] * 3) + "\n",
    '{"box_2d": [10, 10, 20, 20], "label": "x"} {"box_2d": [5,5]',
]


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_answers_never_raise_and_stay_in_range(text: str) -> None:
    out = parse_boxes(text)
    for b in out.boxes:
        y0, x0, y1, x1 = b.norm
        assert 0 <= y0 < y1 <= 1000 and 0 <= x0 < x1 <= 1000
        assert b.label


def test_malformed_list_is_long_enough() -> None:
    assert len(MALFORMED) >= 30


def test_drop_reasons_are_given() -> None:
    out = parse_boxes('[{"box_2d": [1, 2, 3], "label": "heart"}, {"box_2d": [1,2,3,4]}, 5]')
    assert out.boxes == []
    assert len(out.dropped) == 3
    assert any("four numbers" in d for d in out.dropped)
    assert any("no label" in d for d in out.dropped)


_number = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**6), 10**6),
    st.text(max_size=5),
    st.none(),
    st.booleans(),
)
_item = st.one_of(
    st.fixed_dictionaries(
        {"box_2d": st.lists(_number, min_size=0, max_size=6), "label": st.text(max_size=20)}
    ),
    _number,
)


@settings(max_examples=300, deadline=None)
@given(
    items=st.lists(_item, max_size=6),
    wrap=st.sampled_from(["bare", "fence", "think", "cut"]),
    w=st.integers(1, 4000),
    h=st.integers(1, 4000),
)
def test_fuzz_never_raises_and_never_leaves_the_image(items, wrap, w, h) -> None:
    body = json.dumps(items, default=str)
    text = {
        "bare": body,
        "fence": f"```json\n{body}\n```",
        "think": f"<unused94>x<unused95>{body}",
        "cut": body[: len(body) // 2],
    }[wrap]
    out = parse_boxes(text)
    for b in out.boxes:
        x0, y0, x1, y1 = norm_to_pixels(b.norm, w, h)
        assert 0 <= x0 <= x1 <= w and 0 <= y0 <= y1 <= h


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_arbitrary_text(text: str) -> None:
    parse_boxes(text)


# --- coordinates: pad -> normalise -> answer -> parse -> un-pad ----------------------
def _round_trip(w: int, h: int, box: tuple[int, int, int, int]) -> tuple[float, ...]:
    """Draw `box` on a w x h image, pad it exactly as preprocessing does, find the box on
    the padded square, write the model's answer from it, and map the answer back."""
    arr = np.zeros((h, w), np.uint8)
    x0, y0, x1, y1 = box
    arr[y0:y1, x0:x1] = 255
    padded = np.asarray(pad_to_square(Image.fromarray(arr), 0))
    side = padded.shape[0]
    ys, xs = np.nonzero(padded)
    norm = [
        ys.min() / side * 1000,
        xs.min() / side * 1000,
        (ys.max() + 1) / side * 1000,
        (xs.max() + 1) / side * 1000,
    ]
    answer = "```json\n" + json.dumps([{"box_2d": [round(v) for v in norm], "label": "x"}])
    parsed = parse_boxes(answer + "\n```")
    return norm_to_pixels(parsed.boxes[0].norm, w, h)


@pytest.mark.parametrize(
    ("w", "h", "box"),
    [
        (300, 500, (40, 60, 200, 300)),  # portrait
        (640, 360, (500, 10, 630, 200)),  # landscape
        (2048, 2500, (100, 1800, 900, 2400)),  # DICOM-sized, Rows != Columns
        (1001, 999, (0, 0, 1001, 999)),  # odd sizes, whole image
    ],
)
def test_round_trip_within_one_pixel(w: int, h: int, box: tuple[int, int, int, int]) -> None:
    got = _round_trip(w, h, box)
    side = max(w, h)
    tolerance = max(1.0, side / 1000)  # 0-1000 integers quantise to side/1000 pixels
    assert got == pytest.approx(box, abs=tolerance)


@pytest.mark.parametrize(("w", "h"), [(300, 500), (640, 360), (2048, 2500)])
def test_exact_inverse_of_pixels_to_norm(w: int, h: int) -> None:
    box = (12.0, 34.0, 256.0, 300.0)
    assert norm_to_pixels(pixels_to_norm(box, w, h), w, h) == pytest.approx(box, abs=0.01)


def test_padding_offsets_match_preprocess() -> None:
    assert padded_offsets(300, 500) == (500, 100, 0)
    assert padded_offsets(641, 360) == (641, 0, 140)


def test_dicom_rows_ne_columns_round_trip(tmp_path) -> None:
    """A DICOM (Rows 500, Columns 300) through ingest: boxes land on pixel (column, row)."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from medlens.imaging.ingest import ingest

    arr = np.full((500, 300), 100, np.uint16)
    arr[350:450, 20:120] = 4000
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = FileDataset(str(tmp_path / "x.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, generate_uid()
    ds.Modality, ds.Rows, ds.Columns = "DX", 500, 300
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = arr.tobytes()
    ds.save_as(tmp_path / "x.dcm", enforce_file_format=True)
    del pydicom
    img = ingest(tmp_path / "x.dcm")
    assert img.image.size == (300, 500)  # (Columns, Rows)
    ys, xs = np.nonzero(np.asarray(img.image.convert("L")) > 200)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (20, 350, 120, 450)
    got = _round_trip(300, 500, (20, 350, 120, 450))
    assert got == pytest.approx((20, 350, 120, 450), abs=1.0)

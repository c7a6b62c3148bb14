"""Golden tests for preprocessing: expected values worked out by hand, not by the code."""

from __future__ import annotations

import numpy as np
from PIL import Image

from medlens.imaging.preprocess import background_value, normalise, pad_to_square, preprocess
from medlens.models.registry import PreprocessSpec


def test_pad_wide_image_adds_rows_top_and_bottom() -> None:
    img = Image.fromarray(np.array([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]], np.uint8), "L")
    out = np.asarray(pad_to_square(img, 0))
    # 5×2 → 5×5: (5−2)//2 = 1 row above, 2 rows below.
    assert out.tolist() == [
        [0, 0, 0, 0, 0],
        [1, 2, 3, 4, 5],
        [6, 7, 8, 9, 10],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
    ]


def test_pad_tall_image_adds_columns_left_and_right() -> None:
    img = Image.fromarray(np.array([[1, 2], [3, 4], [5, 6], [7, 8]], np.uint8), "L")
    out = np.asarray(pad_to_square(img, 9))
    assert out.tolist() == [[9, 1, 2, 9], [9, 3, 4, 9], [9, 5, 6, 9], [9, 7, 8, 9]]


def test_background_is_the_median_border_value() -> None:
    arr = np.full((6, 6), 12, np.uint8)
    arr[2:4, 2:4] = 250  # interior: ignored
    arr[0, 0] = 255  # one bright corner pixel: outvoted
    assert background_value(Image.fromarray(arr, "L")) == 12


def test_preprocess_pads_with_background_without_resizing_when_sized() -> None:
    arr = np.full((8, 4), 20, np.uint8)  # 4 wide, 8 tall, border median 20
    arr[2:6, 1:3] = 200
    spec = PreprocessSpec(size=8, pad_value="background")
    out = np.asarray(preprocess(Image.fromarray(arr, "L"), spec))
    assert out.shape == (8, 8, 3)
    want = np.full((8, 8), 20, np.uint8)
    want[2:6, 3:5] = 200  # centred: 2 columns of padding on each side
    for c in range(3):
        assert np.array_equal(out[..., c], want)


def test_medsiglip_zero_pad_and_no_antialias_downsample() -> None:
    # 8×4 (w×h) image whose columns hold 10·x; zero padding to 8×8, then 8 → 4 without
    # antialias: sample centres at 0.5, 2.5, 4.5, 6.5 → mean of column pairs.
    arr = np.tile((np.arange(8) * 10).astype(np.uint8), (4, 1))
    spec = PreprocessSpec(size=4, pad_value="zero", antialias=False)
    out = np.asarray(preprocess(Image.fromarray(arr, "L"), spec))[..., 0]
    # Rows: padded rows 0-1 zero, 2-5 data, 6-7 zero; row centres 0.5 (rows 0,1: zero),
    # 2.5 (rows 2,3: data), 4.5 (rows 4,5: data), 6.5 (rows 6,7: zero).
    assert out.tolist() == [[0, 0, 0, 0], [5, 25, 45, 65], [5, 25, 45, 65], [0, 0, 0, 0]]


def test_no_antialias_upsample_half_pixel_bilinear() -> None:
    arr = np.array([[0, 100], [200, 40]], np.uint8)
    spec = PreprocessSpec(size=4, pad_value="zero", antialias=False)
    out = np.asarray(preprocess(Image.fromarray(arr, "L"), spec))[..., 0].astype(int)
    # Sample positions (i + 0.5)/2 − 0.5 = −0.25, 0.25, 0.75, 1.25 → clipped 0, .25, .75, 1.
    w = [0.0, 0.25, 0.75, 1.0]
    want = [
        [round((1 - wy) * ((1 - wx) * 0 + wx * 100) + wy * ((1 - wx) * 200 + wx * 40)) for wx in w]
        for wy in w
    ]
    assert out.tolist() == want


def test_medgemma_896_from_non_square_exact_size_and_pad_band() -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(60, 255, (200, 300), dtype=np.uint8)
    arr[0, :] = arr[-1, :] = arr[:, 0] = arr[:, -1] = 7  # border → background 7
    spec = PreprocessSpec(size=896)
    out = np.asarray(preprocess(Image.fromarray(arr, "L"), spec))
    assert out.shape == (896, 896, 3) and out.dtype == np.uint8
    # 300×200 → 300×300 with 50 rows of 7 above: 50·896/300 ≈ 149 output rows of pure pad.
    assert (out[:140] == 7).all() and (out[-140:] == 7).all()
    assert out[300:600].mean() > 100


def test_normalise_maps_0_255_to_minus1_plus1() -> None:
    arr = np.zeros((2, 2, 3), np.uint8)
    arr[0, 0] = 255
    spec = PreprocessSpec(size=2)
    out = normalise(Image.fromarray(arr, "RGB"), spec)
    assert out.shape == (3, 2, 2) and out.dtype == np.float32
    assert out[:, 0, 0].tolist() == [1.0, 1.0, 1.0]
    assert out[:, 1, 1].tolist() == [-1.0, -1.0, -1.0]

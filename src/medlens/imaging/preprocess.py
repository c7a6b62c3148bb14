"""Preprocessing per registry spec: pad to square, resize, (normalise).

One implementation for every backend. Padding happens before resizing because the HF
Gemma 3 processor resizes to a square without padding (it would distort anatomy).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from PIL import Image

if TYPE_CHECKING:
    import numpy as np


class PreprocessSpec(Protocol):
    """What preprocessing reads from a model's spec (models.registry.PreprocessSpec).

    Structural, so imaging stays below models in the layers.
    """

    @property
    def size(self) -> int: ...
    @property
    def pad_to_square(self) -> bool: ...
    @property
    def pad_value(self) -> str: ...
    @property
    def resample(self) -> str: ...
    @property
    def antialias(self) -> bool: ...
    @property
    def mean(self) -> tuple[float, float, float]: ...
    @property
    def std(self) -> tuple[float, float, float]: ...


_RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def background_value(image: Image.Image) -> int | tuple[int, ...]:
    """The image's background: the median of its border pixels (dark for X-rays)."""
    import numpy as np

    arr = np.asarray(image)
    border = np.concatenate(
        [
            arr[0].reshape(-1, *arr.shape[2:]),
            arr[-1].reshape(-1, *arr.shape[2:]),
            arr[:, 0].reshape(-1, *arr.shape[2:]),
            arr[:, -1].reshape(-1, *arr.shape[2:]),
        ]
    )
    med = np.median(border, axis=0)
    if np.ndim(med) == 0:
        return int(med)
    return tuple(int(v) for v in med)


def pad_to_square(image: Image.Image, fill: int | tuple[int, ...]) -> Image.Image:
    w, h = image.size
    if w == h:
        return image
    side = max(w, h)
    canvas = Image.new(image.mode, (side, side), fill)
    canvas.paste(image, ((side - w) // 2, (side - h) // 2))
    return canvas


def preprocess(image: Image.Image, spec: PreprocessSpec) -> Image.Image:
    """RGB, square, spec.size × spec.size."""
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    if spec.pad_to_square:
        fill = (
            background_value(image)
            if spec.pad_value == "background"
            else (0 if image.mode == "L" else (0, 0, 0))
        )
        image = pad_to_square(image, fill)
    if image.size != (spec.size, spec.size):
        resample = _RESAMPLE[spec.resample]
        if spec.antialias or resample is not Image.Resampling.BILINEAR:
            image = image.resize((spec.size, spec.size), resample)
        else:
            image = _resize_no_antialias(image, spec.size)
    return image.convert("RGB")


def _resize_no_antialias(image: Image.Image, size: int) -> Image.Image:
    # Google's MedSigLIP evaluation resizes bilinearly without antialiasing
    # (tf.image.resize); Pillow always antialiases when shrinking, so use torch-free numpy.
    import numpy as np

    arr = np.asarray(image.convert("RGB"), dtype=np.float32)
    h, w = arr.shape[:2]
    ys = (np.arange(size) + 0.5) * (h / size) - 0.5
    xs = (np.arange(size) + 0.5) * (w / size) - 0.5
    ys = np.clip(ys, 0, h - 1)
    xs = np.clip(xs, 0, w - 1)
    y0 = np.floor(ys).astype(int)
    x0 = np.floor(xs).astype(int)
    y1 = np.minimum(y0 + 1, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    wy = (ys - y0)[:, None, None]
    wx = (xs - x0)[None, :, None]
    top = arr[y0][:, x0] * (1 - wx) + arr[y0][:, x1] * wx
    bottom = arr[y1][:, x0] * (1 - wx) + arr[y1][:, x1] * wx
    out = top * (1 - wy) + bottom * wy
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), "RGB")


def normalise(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """(3, size, size) float32 scaled to [0,1] then (x - mean) / std."""
    import numpy as np

    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / np.float32(255.0)
    out = (arr - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(out.transpose(2, 0, 1), dtype=np.float32)

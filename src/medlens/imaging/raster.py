"""PNG and JPEG decoding with Pillow, defensively.

* Dimensions are read from the header and checked against the pixel cap *before* any
  pixel is decoded; Pillow's own DecompressionBombWarning is turned into an error.
* `ImageFile.LOAD_TRUNCATED_IMAGES` stays off: a truncated file is an error, not a
  silently grey-padded picture.
* EXIF orientation is applied, then the pixels are copied into a fresh image so no
  metadata (EXIF, text chunks, ICC, XMP) survives.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps

from medlens.errors import ImageTooLarge, InvalidImage, TruncatedImage

MAX_SIDE = 65_535
MAX_ASPECT = 50.0


@dataclass(frozen=True)
class DecodedRaster:
    image: Image.Image  # "L" or "RGB", 8-bit, no metadata
    source_mode: str
    bits: int
    had_exif: bool
    had_text: bool
    warnings: tuple[str, ...] = ()


def check_dimensions(width: int, height: int, max_pixels: int, label: str) -> None:
    """Refuse absurd or bomb-sized images from their declared size alone."""
    if width < 1 or height < 1:
        raise InvalidImage(f"{label}: the image declares an empty size ({width}x{height}).")
    if width > MAX_SIDE or height > MAX_SIDE:
        raise ImageTooLarge(
            f"{label}: declared size {width}x{height} is beyond any real radiograph; refused."
        )
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{label}: {width}x{height} = {width * height:,} pixels exceeds the limit of "
            f"{max_pixels:,} (MEDLENS_MAX_IMAGE_PIXELS); downscale the image and retry."
        )
    if max(width, height) / min(width, height) > MAX_ASPECT:
        raise InvalidImage(
            f"{label}: absurd dimensions {width}x{height} (aspect ratio over {MAX_ASPECT:g})."
        )


def decode_raster(data: bytes, *, max_pixels: int, label: str) -> DecodedRaster:
    # A module-level flag other code could flip; never decode with it on.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    notes: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as img:
                check_dimensions(img.width, img.height, max_pixels, label)
                had_exif = bool(img.info.get("exif")) or "exif" in img.info
                had_text = any(
                    k not in ("exif", "dpi", "gamma", "transparency", "aspect") for k in img.info
                )
                source_mode = img.mode
                img.load()
                upright: Image.Image = ImageOps.exif_transpose(img)
                arr, bits = _to_8bit(upright, notes)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageTooLarge(f"{label}: decompression bomb refused ({exc}).") from exc
        except (ImageTooLarge, InvalidImage):
            raise
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            msg = str(exc)
            if any(s in msg.lower() for s in ("truncat", "premature", "end of file", "eof")):
                raise TruncatedImage(f"{label}: image truncated ({msg}).") from exc
            raise InvalidImage(f"{label}: unreadable image ({_short(msg)}).") from exc
    # A fresh image from the array: nothing from img.info (EXIF, text, ICC) is carried.
    mode = "L" if arr.ndim == 2 else "RGB"
    image = Image.fromarray(arr, mode)
    return DecodedRaster(image, source_mode, bits, had_exif, had_text, tuple(notes))


def _to_8bit(img: Image.Image, notes: list[str]) -> tuple[np.ndarray, int]:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img).astype(np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        # 16-bit greyscale often uses only 10-12 bits; rescale to the full 8-bit range.
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
        notes.append("16-bit greyscale rescaled to the full 8-bit range")
        return np.clip(np.rint(scaled), 0, 255).astype(np.uint8), 16
    if mode == "1":
        return np.asarray(img.convert("L")), 1
    if mode == "L":
        return np.asarray(img), 8
    if mode in ("LA", "PA", "RGBA", "P", "La", "RGBa") or "transparency" in img.info:
        # Alpha is composited onto black: the background of an X-ray.
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(base, rgba).convert("RGB")
    elif mode != "RGB":
        img = img.convert("RGB")  # CMYK, YCbCr, I;16 RGB variants
    arr = np.asarray(img)
    if arr.ndim == 3 and _is_grey(arr):
        return np.ascontiguousarray(arr[:, :, 0]), 8
    return np.ascontiguousarray(arr), 8


def _is_grey(arr: np.ndarray) -> bool:
    # JPEG chroma noise leaves grey images with tiny channel differences.
    step = max(1, int(np.sqrt(arr.shape[0] * arr.shape[1] / 250_000)))
    sample = arr[::step, ::step].astype(np.int16)
    d1 = np.abs(sample[:, :, 0] - sample[:, :, 1])
    d2 = np.abs(sample[:, :, 1] - sample[:, :, 2])
    return bool(max(d1.max(initial=0), d2.max(initial=0)) <= 2)


def _short(msg: str, limit: int = 160) -> str:
    msg = " ".join(msg.split())
    return msg if len(msg) <= limit else msg[: limit - 1] + "…"

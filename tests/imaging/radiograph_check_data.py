"""Data for the non-radiograph check (imaging.radiograph_stats): every radiograph in the
shared data, and generated non-radiographs: scikit-image's `data` photos (greyscale) and
transformed variants, rendered text, diagrams, gradients and noise. Deterministic. Each
item has a split (calibration / held-out) fixed by a hash of its source, so no variant of
a calibration photo is ever in the held-out part."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

PHOTOS = (
    "astronaut",
    "brick",
    "camera",
    "cat",
    "cell",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "page",
    "rocket",
    "text",
    "retina",
    "colorwheel",
    "checkerboard",
    "microaneurysms",
    "logo",
)


def split_of(source: str) -> str:
    """'calibration' or 'held-out', fixed by a hash of the source name."""
    return "calibration" if zlib.crc32(source.encode()) % 2 == 0 else "held-out"


COLLECTIONS = ("nih_cxr14_sample", "covid_chestxray", "cr_dx_dicom")


def radiographs(data: Path) -> Iterator[tuple[str, str, str, Any]]:
    """(collection, name, split, IngestedImage) for every radiograph in the shared data:
    the two CXR collections and the DICOMs whose Modality is CR/DX/DR."""
    from medlens.imaging.gate import RADIOGRAPH_MODALITIES
    from medlens.imaging.ingest import ingest, probe

    for collection in COLLECTIONS[:2]:
        for f in sorted((data / "cxr" / collection / "images").iterdir()):
            yield collection, f.name, split_of(f.name), ingest(f)
    for f in sorted((data / "dicom").glob("*.dcm")):
        try:
            modality = (probe(f).modality or "").upper()
        except Exception:  # an unreadable header is no radiograph to measure
            continue
        if modality in RADIOGRAPH_MODALITIES:
            yield COLLECTIONS[2], f.name, split_of(f.name), ingest(f)


def _photo(name: str) -> Image.Image:
    from skimage import data

    arr = getattr(data, name)()
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., :3]
    img = Image.fromarray(arr.astype(np.uint8))
    return img.convert("L")


def _variants(img: Image.Image, seed: int) -> Iterator[tuple[str, Image.Image]]:
    rng = np.random.default_rng(seed)
    w, h = img.size
    yield "orig", img
    yield "crop", img.crop((w // 8, h // 8, w * 7 // 8, h * 7 // 8))
    yield "rot90", img.rotate(90, expand=True)
    yield "rot17", img.rotate(17, expand=True, fillcolor=0)
    yield "flip", ImageOps.mirror(img)
    yield "invert", ImageOps.invert(img)
    yield "equalize", ImageOps.equalize(img)
    yield "lowcontrast", Image.fromarray((np.asarray(img) * 0.4 + 80).astype(np.uint8))
    noisy = np.asarray(img, float) + rng.normal(0, 20, (h, w))
    yield "noise", Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    yield "blur", img.filter(ImageFilter.GaussianBlur(3))
    yield "square", img.resize((512, 512))


def _text(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    img = Image.new("L", (600, 400), int(rng.integers(200, 256)))
    draw = ImageDraw.Draw(img)
    words = ["chest", "radiograph", "figure", "patient", "lung", "opacity", "table", "arrow"]
    for row in range(12):
        line = " ".join(rng.choice(words, 6))
        draw.text((10, 10 + row * 30), line, fill=int(rng.integers(0, 60)))
    return img


def _diagram(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    img = Image.new("L", (500, 500), 255)
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x0, y0 = rng.integers(0, 400, 2)
        x1, y1 = x0 + rng.integers(20, 100), y0 + rng.integers(20, 100)
        shape = rng.integers(0, 3)
        fill = int(rng.integers(0, 200))
        if shape == 0:
            draw.rectangle((x0, y0, x1, y1), outline=0, fill=fill)
        elif shape == 1:
            draw.ellipse((x0, y0, x1, y1), outline=0, fill=fill)
        else:
            draw.line((x0, y0, x1, y1), fill=0, width=3)
    return img


def _gradient(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:300, 0:300] / 300.0
    kind = seed % 4
    if kind == 0:
        arr = xx * rng.uniform(0.5, 1) + yy * rng.uniform(0, 0.5)
    elif kind == 1:
        arr = np.hypot(xx - 0.5, yy - 0.5)
    elif kind == 2:
        arr = np.sin(xx * rng.uniform(5, 20)) + np.cos(yy * rng.uniform(5, 20))
    else:
        arr = rng.random((300, 300))
    arr = (arr - arr.min()) / (np.ptp(arr) or 1)
    return Image.fromarray((arr * 255).astype(np.uint8))


def nonradiograph_images() -> Iterator[tuple[str, str, Image.Image]]:
    """(name, split, image) for every negative: 22 photos x 11 variants + 48 synthetic."""
    for i, name in enumerate(PHOTOS):
        for variant, img in _variants(_photo(name), i):
            yield f"{name}/{variant}", split_of(name), img
    for kind, make in (("text", _text), ("diagram", _diagram), ("gradient", _gradient)):
        for seed in range(16):
            source = f"{kind}-{seed}"
            yield source, split_of(source), make(seed)

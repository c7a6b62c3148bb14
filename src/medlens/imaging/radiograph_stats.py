"""Does this greyscale picture look like a chest radiograph? Pixel statistics, no model weights.

A chest film has measurable habits that photos, drawings, text and noise rarely share all
at once: a broad, smooth grey-level histogram, soft edges for its contrast (little fine
texture), most of its energy at coarse scales, rough left-right symmetry, a bright midline
(mediastinum, spine) between darker lung fields, a brighter lower part (diaphragm,
abdomen), a near-square shape, and the average chest layout (`template`).

The check is one-class: it is fitted on radiographs only (`fit_model`, run by
`benchmarks/radiograph_gate_calibration.py` on the calibration half of ../shared/data) and
refuses an image when a feature leaves the radiographs' range (+ a margin) or when the
feature vector as a whole is farther from the radiographs (Mahalanobis distance) than any
calibration radiograph. Non-radiographs never enter the fit; they only measure it
(tests/imaging/test_imaging_radiograph_check.py; rates in docs/imaging.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

SIDE = 128  # features are computed on a SIDE x SIDE thumbnail
TEMPLATE_SIDE = 12
MODEL_PATH = Path(__file__).parent / "data" / "radiograph_model.json"
BOX_MARGIN = 0.15  # of each feature's calibration span, on both sides
DISTANCE_MARGIN = 1.0 + 1e-6  # x the largest calibration distance (+ float slack)

FEATURES = (
    "aspect", "entropy", "extremes", "modal", "roughness", "symmetry", "midline",
    "coarse", "fine", "edge_kurtosis", "skew", "border", "symmetry_coarse",
    "bottom_top", "mean", "std", "template", "corner_contrast", "corner_dark",
)  # fmt: skip

_WHY = {
    "aspect": "its shape is too elongated for a chest film",
    "entropy": "too few grey levels (a drawing, text or a flat image)",
    "extremes": "too much pure black/white (a drawing, text or a diagram)",
    "modal": "dominated by a single grey level (a drawing, text or a flat background)",
    "roughness": "too much fine texture or sharp edges (a photograph, text or noise)",
    "fine": "too much fine texture or sharp edges (a photograph, text or noise)",
    "coarse": "too little large-scale structure (texture, noise or a pattern)",
    "template": "no chest layout (lung fields, mediastinum, diaphragm)",
    "midline": "no bright midline between two darker lung fields",
    "bottom_top": "not brighter below (diaphragm) than above, as a chest film is",
}


@dataclass(frozen=True)
class RadiographModel:
    """The calibrated one-class model (JSON in imaging/data, written by fit_model)."""

    low: np.ndarray
    high: np.ndarray
    mean: np.ndarray
    inv_cov: np.ndarray
    max_distance: float
    template: np.ndarray  # TEMPLATE_SIDE^2, zero mean, unit std
    n_fit: int

    def to_json(self) -> dict[str, Any]:
        return {
            "features": list(FEATURES),
            "low": self.low.round(6).tolist(),
            "high": self.high.round(6).tolist(),
            "mean": self.mean.round(8).tolist(),
            "inv_cov": self.inv_cov.round(8).tolist(),
            "max_distance": round(self.max_distance, 6),
            "template": self.template.round(4).tolist(),
            "n_fit": self.n_fit,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RadiographModel:
        if tuple(data["features"]) != FEATURES:
            raise ValueError("radiograph model was fitted on other features; recalibrate")
        arr = {k: np.asarray(data[k], dtype=np.float64) for k in ("low", "high", "mean")}
        return cls(
            arr["low"], arr["high"], arr["mean"], np.asarray(data["inv_cov"], np.float64),
            float(data["max_distance"]), np.asarray(data["template"], np.float64),
            int(data["n_fit"]),
        )  # fmt: skip


@dataclass(frozen=True)
class RadiographCheck:
    looks_like_radiograph: bool
    reason: str  # why not (empty when it does)
    out_of_range: tuple[str, ...]
    distance: float  # Mahalanobis distance to the radiographs, / the calibrated maximum


@lru_cache(maxsize=1)
def load_model(path: Path = MODEL_PATH) -> RadiographModel:
    return RadiographModel.from_json(json.loads(path.read_text()))


def thumbnail(image: Image.Image, side: int = SIDE) -> np.ndarray:
    grey = image.convert("L").resize((side, side), Image.Resampling.BILINEAR)
    return np.asarray(grey, dtype=np.float64)


def template_of(image: Image.Image) -> np.ndarray:
    """The image at TEMPLATE_SIDE^2, standardised: what the chest template is averaged from."""
    t = image.convert("L").resize((TEMPLATE_SIDE, TEMPLATE_SIDE), Image.Resampling.BOX)
    a = np.asarray(t, dtype=np.float64).ravel()
    return (a - a.mean()) / (a.std() or 1.0)


def radiograph_features(image: Image.Image, template: np.ndarray | None = None) -> np.ndarray:
    """The FEATURES of a PIL image (any mode; colour is averaged to grey)."""
    w, h = image.size
    a = thumbnail(image)
    std = float(a.std()) or 1.0
    hist = np.bincount((a // 4).astype(np.int64).ravel(), minlength=64) / a.size
    nz = hist[hist > 0]
    lap = -4 * a[1:-1, 1:-1] + a[:-2, 1:-1] + a[2:, 1:-1] + a[1:-1, :-2] + a[1:-1, 2:]
    gx, gy = np.diff(a, axis=1)[:-1], np.diff(a, axis=0)[:, :-1]
    mag2 = gx**2 + gy**2
    body = a[SIDE // 8 : SIDE * 7 // 8]  # the rows where the lungs are
    cols = body.mean(axis=0)
    lungs = np.r_[
        cols[int(SIDE * 0.2) : int(SIDE * 0.35)], cols[int(SIDE * 0.65) : int(SIDE * 0.8)]
    ]
    small = np.asarray(image.convert("L").resize((16, 16), Image.Resampling.BOX), np.float64)
    k, c = SIDE // 10, SIDE // 2
    corners = np.r_[a[:k, :k].ravel(), a[:k, -k:].ravel(), a[-k:, :k].ravel(), a[-k:, -k:].ravel()]
    mids = np.r_[
        a[:k, c - k // 2 : c + k // 2].ravel(), a[-k:, c - k // 2 : c + k // 2].ravel(),
        a[c - k // 2 : c + k // 2, :k].ravel(), a[c - k // 2 : c + k // 2, -k:].ravel(),
    ]  # fmt: skip
    q = SIDE // 4
    frame = np.r_[a[:8].ravel(), a[-8:].ravel(), a[:, :8].ravel(), a[:, -8:].ravel()]
    tmpl = template if template is not None else load_model().template
    values = {
        "aspect": max(w, h) / max(1, min(w, h)),
        "entropy": float(-(nz * np.log2(nz)).sum()),
        "extremes": float(((a <= 3) | (a >= 252)).mean()),
        "modal": float(hist.max()),
        "roughness": float(np.abs(lap).mean() / std),
        "symmetry": _corr(body, body[:, ::-1]),
        "midline": float((cols[int(SIDE * 0.42) : int(SIDE * 0.58)].mean() - lungs.mean()) / std),
        "coarse": float(small.std() / std),
        "fine": float(np.abs(np.diff(a, axis=1)).mean() / std),
        "edge_kurtosis": float(np.log((mag2**2).mean() / (mag2.mean() ** 2 + 1e-9) + 1e-9)),
        "skew": float(((a - a.mean()) ** 3).mean() / std**3),
        "border": float((a[q : 3 * q, q : 3 * q].mean() - frame.mean()) / std),
        "symmetry_coarse": _corr(small, small[:, ::-1]),
        "bottom_top": float((a[2 * SIDE // 3 :].mean() - a[: SIDE // 3].mean()) / std),
        "mean": float(a.mean() / 255),
        "std": float(std / 255),
        "template": float((template_of(image) * tmpl).mean()),
        "corner_contrast": float((mids.mean() - corners.mean()) / std),
        "corner_dark": float((corners <= 8).mean() - (mids <= 8).mean()),
    }  # fmt: skip
    return np.nan_to_num(np.array([values[f] for f in FEATURES], dtype=np.float64))


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    if x.std() == 0 or y.std() == 0:
        return 0.0
    return float(np.corrcoef(x.ravel(), y.ravel())[0, 1])


def fit_model(images: list[Image.Image]) -> RadiographModel:
    """Fit the one-class model on radiographs (only): template, ranges, distance scale."""
    if len(images) < len(FEATURES) + 2:
        raise ValueError(f"need at least {len(FEATURES) + 2} radiographs to fit, got {len(images)}")
    template = np.mean([template_of(im) for im in images], axis=0)
    t = template.reshape(TEMPLATE_SIDE, TEMPLATE_SIDE)
    t = (t + t[:, ::-1]) / 2  # a chest is symmetric; so is its template
    template = ((t - t.mean()) / t.std()).ravel()
    x = np.stack([radiograph_features(im, template) for im in images])
    lo, hi = x.min(axis=0), x.max(axis=0)
    span = hi - lo
    cov = np.cov(x.T)
    cov += np.eye(len(FEATURES)) * 1e-2 * np.diag(cov).mean()  # ridge: a few features correlate
    inv = np.linalg.inv(cov)
    mean = x.mean(axis=0)
    dist = np.sqrt(np.einsum("ij,jk,ik->i", x - mean, inv, x - mean))
    return RadiographModel(
        lo - BOX_MARGIN * span, hi + BOX_MARGIN * span, mean, inv,
        float(dist.max() * DISTANCE_MARGIN), template, len(images),
    )  # fmt: skip


def check_radiograph(image: Image.Image, model: RadiographModel | None = None) -> RadiographCheck:
    """Does the image look like a chest radiograph to the calibrated model?"""
    m = model or load_model()
    x = radiograph_features(image, m.template)
    outside = tuple(
        f for f, v, lo, hi in zip(FEATURES, x, m.low, m.high, strict=True) if not lo <= v <= hi
    )
    d = x - m.mean
    distance = float(np.sqrt(d @ m.inv_cov @ d)) / m.max_distance
    if outside:
        why = next(
            (_WHY[f] for f in outside if f in _WHY),
            "its pixel statistics are unlike a radiograph's",
        )
        return RadiographCheck(
            False, f"does not look like a chest radiograph: {why}", outside, distance
        )
    if distance > 1.0:
        reason = (
            "does not look like a chest radiograph: its pixel statistics as a whole are"
            " unlike any calibration radiograph's"
        )
        return RadiographCheck(False, reason, (), distance)
    return RadiographCheck(True, "", (), distance)

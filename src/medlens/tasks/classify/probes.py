"""Probes: small trained classifiers on encoder embeddings, stored as versioned JSON files.

A probe is a logistic regression on L2-normalised embeddings plus Platt calibration
fitted on out-of-fold scores (so calibrated probabilities are not overfit to the training
rows), and a decision threshold chosen on those out-of-fold probabilities. The file holds
everything needed to predict (weights, bias, calibration, threshold), what it was trained
on (encoder id, label, library, counts, cross-validated AUC with a 95 % bootstrap
interval) and a sha256 over its content, checked on load. Training lives in
`medlens.evaluation.probe_train`; this module only loads and applies probes (server-safe,
numpy only).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medlens.errors import ConfigError

PROBE_FORMAT = "medlens-probe"
PROBE_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Probe:
    name: str
    label: str
    version: str
    encoder_id: str
    weights: np.ndarray  # (dim,) float64, on L2-normalised embeddings
    bias: float
    calib_a: float  # calibrated p = sigmoid(calib_a * (w·x + b) + calib_b)
    calib_b: float
    threshold: float  # on the calibrated probability
    threshold_rule: str = "youden"
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""
    path: str = ""

    @property
    def dim(self) -> int:
        return int(self.weights.shape[0])

    def decision_function(self, emb: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(emb, dtype=np.float64))
        if x.shape[1] != self.dim:
            raise ConfigError(
                f"Probe {self.name!r} expects {self.dim}-d embeddings from {self.encoder_id}, "
                f"got {x.shape[1]}-d; use the encoder the probe was trained with."
            )
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return x @ self.weights + self.bias

    def predict_proba(self, emb: np.ndarray) -> np.ndarray:
        """(N,) calibrated probability of the positive class."""
        z = self.calib_a * self.decision_function(emb) + self.calib_b
        return 0.5 * (1.0 + np.tanh(0.5 * z))

    def predict(self, emb: np.ndarray) -> np.ndarray:
        return self.predict_proba(emb) >= self.threshold

    def provenance(self) -> dict[str, Any]:
        """What an interpretation records about the probe that scored it."""
        return {
            "name": self.name,
            "label": self.label,
            "version": self.version,
            "encoder_id": self.encoder_id,
            "sha256": self.sha256,
            "threshold": self.threshold,
            "threshold_rule": self.threshold_rule,
            "cv_auc": self.metrics.get("auc"),
            "cv_auc_ci95": self.metrics.get("auc_ci95"),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PROBE_FORMAT,
            "format_version": PROBE_FORMAT_VERSION,
            "name": self.name,
            "label": self.label,
            "version": self.version,
            "encoder_id": self.encoder_id,
            "dim": self.dim,
            "weights": [float(w) for w in self.weights],
            "bias": float(self.bias),
            "calibration": {"method": "platt", "a": float(self.calib_a), "b": float(self.calib_b)},
            "threshold": float(self.threshold),
            "threshold_rule": self.threshold_rule,
            "metrics": self.metrics,
            "training": self.training,
        }


def content_sha256(body: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a probe body (without its `sha256` field)."""
    clean = {k: v for k, v in body.items() if k != "sha256"}
    canonical = json.dumps(clean, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def save_probe(probe: Probe, directory: Path) -> Path:
    """Write `<directory>/<name>-<version>.json` atomically; returns the path."""
    directory.mkdir(parents=True, exist_ok=True)
    body = probe.to_dict()
    body["sha256"] = content_sha256(body)
    path = directory / f"{probe.name}-{probe.version}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(body, indent=1, sort_keys=True), "utf-8")
    tmp.replace(path)
    return path


def load_probe(path: str | Path) -> Probe:
    """Load and verify a probe file (format, shapes, sha256)."""
    p = Path(path).expanduser()
    try:
        body = json.loads(p.read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"Probe file {p} not found; train one with `medlens probe train`."
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"Probe file {p} is not readable JSON: {exc}") from exc
    if not isinstance(body, dict) or body.get("format") != PROBE_FORMAT:
        raise ConfigError(f"{p} is not a MedLens probe file.")
    if body.get("format_version") != PROBE_FORMAT_VERSION:
        raise ConfigError(f"{p}: unsupported probe format version {body.get('format_version')}.")
    stored = body.get("sha256", "")
    if stored != content_sha256(body):
        raise ConfigError(f"Probe file {p} fails its sha256 check (edited or corrupted).")
    try:
        weights = np.asarray(body["weights"], dtype=np.float64)
        if weights.ndim != 1 or weights.shape[0] != int(body["dim"]):
            raise ValueError("weights length does not match dim")
        cal = body["calibration"]
        return Probe(
            name=str(body["name"]),
            label=str(body["label"]),
            version=str(body["version"]),
            encoder_id=str(body["encoder_id"]),
            weights=weights,
            bias=float(body["bias"]),
            calib_a=float(cal["a"]),
            calib_b=float(cal["b"]),
            threshold=float(body["threshold"]),
            threshold_rule=str(body.get("threshold_rule", "")),
            metrics=dict(body.get("metrics", {})),
            training=dict(body.get("training", {})),
            sha256=stored,
            path=str(p),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"Probe file {p} is malformed: {exc}") from exc

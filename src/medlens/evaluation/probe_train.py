"""Train a probe (logistic regression on embeddings) with honest, cross-validated metrics.

Every number reported comes from out-of-fold predictions of stratified k-fold
cross-validation, grouped by patient when the data says which images share a patient:
each case is scored by a model that never saw it nor another image of its patient. From those:
- AUC with a 95 % percentile-bootstrap interval (medlens.evaluation.stats; cases are
  resampled, not patients, so with several images per patient the interval is narrower
  than it should be);
- Platt calibration (a 1-d logistic fit of the out-of-fold scores), so the stored
  probabilities are calibrated on unseen data;
- the decision threshold (Youden's J, or the highest threshold reaching a target
  sensitivity), chosen on the calibrated out-of-fold probabilities.
The stored weights come from a final fit on all rows. Needs scikit-learn (retrieval extra).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from medlens.errors import BackendUnavailable, ConfigError
from medlens.tasks.classify.probes import Probe


@dataclass(frozen=True)
class ThresholdRule:
    kind: str  # "youden" | "sensitivity"
    target: float = 0.0

    @classmethod
    def parse(cls, text: str) -> ThresholdRule:
        text = text.strip().lower()
        if text == "youden":
            return cls("youden")
        if text.startswith("sensitivity:"):
            try:
                target = float(text.split(":", 1)[1])
            except ValueError:
                target = -1.0
            if 0.0 < target <= 1.0:
                return cls("sensitivity", target)
        raise ConfigError("Threshold rule must be 'youden' or 'sensitivity:0.9' (0 < target <= 1).")

    def __str__(self) -> str:
        return self.kind if self.kind == "youden" else f"sensitivity:{self.target:g}"


def _sklearn() -> Any:
    try:
        from sklearn import linear_model, model_selection
    except ImportError as exc:
        raise BackendUnavailable(
            "Probe training needs scikit-learn: `pip install medlens[retrieval]`."
        ) from exc
    return linear_model, model_selection


def pick_threshold(y: np.ndarray, p: np.ndarray, rule: ThresholdRule) -> float:
    """Threshold on probabilities (predict positive when p >= threshold)."""
    cands = np.unique(p)[::-1]  # high to low
    pos = max(int((y == 1).sum()), 1)
    neg = max(int((y == 0).sum()), 1)
    best_t, best_j = float(cands[0]), -math.inf
    for t in cands:
        pred = p >= t
        tpr = float((pred & (y == 1)).sum()) / pos
        fpr = float((pred & (y == 0)).sum()) / neg
        if rule.kind == "sensitivity":
            if tpr >= rule.target:
                return float(t)
            continue
        if tpr - fpr > best_j:
            best_t, best_j = float(t), tpr - fpr
    return best_t if rule.kind == "youden" else float(cands[-1])


def _fit_lr(X: np.ndarray, y: np.ndarray, C: float, seed: int) -> Any:
    linear_model, _ = _sklearn()
    model = linear_model.LogisticRegression(
        C=C, max_iter=5000, class_weight="balanced", random_state=seed
    )
    model.fit(X, y)
    return model


def train_probe(
    X: np.ndarray,
    y: np.ndarray,
    *,
    name: str,
    label: str,
    encoder_id: str,
    folds: int = 5,
    C: float = 1.0,
    threshold_rule: str = "youden",
    n_boot: int = 1000,
    seed: int = 0,
    training: dict[str, Any] | None = None,
    groups: list[str | None] | None = None,
) -> Probe:
    """Cross-validate, calibrate, pick a threshold, fit on all rows; returns the Probe."""
    _sklearn()  # fail on a missing scikit-learn before judging the data
    rule = ThresholdRule.parse(threshold_rule)
    X, y = _checked_rows(X, y)
    cv = _Folds.plan(y, groups, folds, label, seed)
    oof = np.zeros(y.size, np.float64)
    for train_idx, test_idx in cv.split(X, y):
        m = _fit_lr(X[train_idx], y[train_idx], C, seed)
        oof[test_idx] = m.decision_function(X[test_idx])
    a, b = _platt(oof, y)
    p_oof = 0.5 * (1.0 + np.tanh(0.5 * (a * oof + b)))
    threshold = pick_threshold(y, p_oof, rule)
    final = _fit_lr(X, y, C, seed)
    weights = final.coef_[0].astype(np.float64)
    bias = float(final.intercept_[0])
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    digest = hashlib.sha256(weights.tobytes() + np.float64(bias).tobytes()).hexdigest()[:8]
    train_meta = {
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": "logistic regression (L2, class_weight=balanced) on L2-normalised embeddings",
        "C": C,
        "seed": seed,
        **(training or {}),
    }
    return Probe(
        name=name,
        label=label,
        version=f"{stamp}-{digest}",
        encoder_id=encoder_id,
        weights=weights,
        bias=bias,
        calib_a=a,
        calib_b=b,
        threshold=float(threshold),
        threshold_rule=str(rule),
        metrics=_metrics(y, oof, p_oof, threshold, cv, n_boot, seed),
        training=train_meta,
    )


def _checked_rows(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(L2-normalised embeddings, 0/1 labels), or why they cannot train a probe."""
    X = np.asarray(X, np.float64)
    X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    y = np.asarray(y, np.int64)
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise ConfigError("Probe training: X must be (N, dim) with one label per row.")
    if int((y == 1).sum()) + int((y == 0).sum()) != y.size:
        raise ConfigError("Probe training: labels must be 0 or 1.")
    return X, y


class TooFewPatients(ConfigError):
    """Positives or negatives come from fewer than 2 patients: no patient-level split."""

    def __init__(self, label: str, n_pos: int, pos_pat: int, n_neg: int, neg_pat: int) -> None:
        self.label = label
        short = [(v, 2 - p) for v, p in ((1, pos_pat), (0, neg_pat)) if p < 2]
        self.need = " and ".join(f"{label}={v} cases from {m} more patient(s)" for v, m in short)
        self.reason = (
            f"label {label!r} has {n_pos} positive case(s) from {pos_pat} patient(s) and "
            f"{n_neg} negative from {neg_pat}; the {'positives' if pos_pat < 2 else 'negatives'}"
            " come from fewer than 2 patients, so cross-validation by patient is impossible "
            "(a probe would be scored on patients it saw)"
        )
        super().__init__(f"Probe training: {self.reason}. Add {self.need}.")


@dataclass(frozen=True)
class _Folds:
    """The cross-validation split: stratified k folds, grouped by patient when known."""

    splitter: Any
    groups: np.ndarray
    k: int
    grouped: bool

    @classmethod
    def plan(
        cls, y: np.ndarray, groups: list[str | None] | None, folds: int, label: str, seed: int
    ) -> _Folds:
        _, model_selection = _sklearn()
        n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
        k = min(folds, n_pos, n_neg)
        if k < 2:
            raise ConfigError(
                f"Label {label!r} has {n_pos} positive and {n_neg} negative cases; "
                "cross-validation needs at least 2 of each (more for a meaningful probe)."
            )
        # Images of one patient stay in one fold (StratifiedGroupKFold); cases without a
        # known patient count as their own group.
        grp = np.asarray(
            [g if g is not None else f"case-{i}" for i, g in enumerate(groups or [None] * y.size)]
        )
        if grp.shape[0] != y.size:
            raise ConfigError("Probe training: one group per row.")
        if len(np.unique(grp)) == y.size:
            splitter = model_selection.StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
            return cls(splitter, grp, k, grouped=False)
        pos_pat, neg_pat = len(np.unique(grp[y == 1])), len(np.unique(grp[y == 0]))
        k = min(k, pos_pat, neg_pat)
        if k < 2:
            raise TooFewPatients(label, n_pos, pos_pat, n_neg, neg_pat)
        splitter = model_selection.StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        return cls(splitter, grp, k, grouped=True)

    @property
    def n_groups(self) -> int:
        return len(np.unique(self.groups))

    def split(self, X: np.ndarray, y: np.ndarray) -> Any:
        """(train indices, test indices) per fold."""
        if self.grouped:
            return self.splitter.split(X, y, self.groups)
        return self.splitter.split(X, y)


def _platt(oof: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Platt scaling (a, b) fitted on out-of-fold scores."""
    linear_model, _ = _sklearn()
    # Large C: an essentially unregularised 1-d fit.
    platt = linear_model.LogisticRegression(C=1e6, max_iter=1000)
    platt.fit(oof.reshape(-1, 1), y)
    return float(platt.coef_[0, 0]), float(platt.intercept_[0])


def _metrics(
    y: np.ndarray,
    oof: np.ndarray,
    p_oof: np.ndarray,
    threshold: float,
    cv: _Folds,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """The probe's reported metrics, all from out-of-fold predictions."""
    from medlens.evaluation import stats

    boot = stats.bootstrap_auc(y, oof, n_boot=n_boot, seed=seed)
    counts = stats.threshold_counts(y, p_oof, threshold)
    spec_den = counts.tn + counts.fp
    return {
        "auc": float(stats.roc_auc(y, oof)),
        "auc_ci95": [boot.ci.low, boot.ci.high],
        "auc_ci_method": f"percentile bootstrap, {n_boot} resamples, seed {seed}",
        "cv": (
            f"stratified {cv.k}-fold{' grouped by patient' if cv.grouped else ''}, shuffled, "
            f"seed {seed}; out-of-fold predictions"
        ),
        "n_groups": cv.n_groups,
        "n": int(y.size),
        "n_positive": int((y == 1).sum()),
        "sensitivity_at_threshold": counts.recall(),
        "specificity_at_threshold": counts.tn / spec_den if spec_den else None,
        "ppv_at_threshold": counts.precision(),
        "brier_oof": float(np.mean((p_oof - y) ** 2)),
    }

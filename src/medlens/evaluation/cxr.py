"""Chest X-ray multi-label classification metrics for any scorer (zero-shot, probe, ...).

`classification_report(y_true, scores)` gives per-label ROC AUC and precision / recall /
F1 at a threshold (score >= threshold is positive), their macro averages over the labels
where they are defined, and percentile bootstrap CIs. Cases are resampled jointly across
labels (one index draw per replicate), so the macro CIs keep the labels' correlation.
A label with no positive (or no negative) case has AUC nan and is left out of macro AUC.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from medlens.evaluation import stats


@dataclass(frozen=True)
class LabelMetrics:
    label: str
    n: int
    n_pos: int
    threshold: float
    auc: float
    auc_ci: stats.Interval
    precision: float
    recall: float
    f1: float
    f1_ci: stats.Interval
    tp: int
    fp: int
    fn: int
    tn: int

    def to_dict(self) -> dict[str, Any]:
        d = {
            k: getattr(self, k)
            for k in (
                "label",
                "n",
                "n_pos",
                "threshold",
                "auc",
                "precision",
                "recall",
                "f1",
                "tp",
                "fp",
                "fn",
                "tn",
            )
        }
        d["auc_ci95"] = self.auc_ci.to_dict()
        d["f1_ci95"] = self.f1_ci.to_dict()
        return d


@dataclass(frozen=True)
class ClassificationReport:
    labels: dict[str, LabelMetrics]
    macro_auc: float
    macro_auc_ci: stats.Interval
    macro_f1: float
    macro_f1_ci: stats.Interval
    n_auc_labels: int  # labels with a defined AUC (both classes present)
    n_boot: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": {k: v.to_dict() for k, v in self.labels.items()},
            "macro_auc": self.macro_auc,
            "macro_auc_ci95": self.macro_auc_ci.to_dict(),
            "macro_f1": self.macro_f1,
            "macro_f1_ci95": self.macro_f1_ci.to_dict(),
            "n_auc_labels": self.n_auc_labels,
            "n_boot": self.n_boot,
            "seed": self.seed,
        }

    def rows(self) -> list[list[str]]:
        """Table rows: label, n+, AUC [CI], P, R, F1 [CI]; then the macro row."""

        def f(x: float) -> str:
            return "-" if math.isnan(x) else f"{x:.3f}"

        def ci(i: stats.Interval) -> str:
            return "" if math.isnan(i.low) else f"[{i.low:.3f}, {i.high:.3f}]"

        out = [
            [
                m.label,
                f"{m.n_pos}/{m.n}",
                f(m.auc),
                ci(m.auc_ci),
                f(m.precision),
                f(m.recall),
                f(m.f1),
                ci(m.f1_ci),
            ]
            for m in self.labels.values()
        ]
        out.append(
            [
                "macro",
                "",
                f(self.macro_auc),
                ci(self.macro_auc_ci),
                "",
                "",
                f(self.macro_f1),
                ci(self.macro_f1_ci),
            ]
        )
        return out


def _matrix(
    y_true: Mapping[str, Any], scores: Mapping[str, Any]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    labels = list(y_true)
    missing = [lbl for lbl in labels if lbl not in scores]
    if missing:
        raise ValueError(f"no scores for label(s) {missing}")
    if not labels:
        raise ValueError("no labels")
    Y = np.column_stack([np.asarray(y_true[lbl]) for lbl in labels])
    S = np.column_stack([np.asarray(scores[lbl], dtype=float) for lbl in labels])
    if Y.shape != S.shape:
        raise ValueError(f"labels {Y.shape} and scores {S.shape} differ in shape")
    if not np.isin(Y, (0, 1)).all():
        raise ValueError("labels must be 0/1")
    if np.isnan(S).any():
        raise ValueError("scores contain NaN")
    return labels, Y.astype(bool), S


def _per_label(Y: np.ndarray, S: np.ndarray, thr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    aucs = np.array([stats.roc_auc(Y[:, j], S[:, j]) for j in range(Y.shape[1])])
    f1s = np.array(
        [
            stats.threshold_counts(Y[:, j], S[:, j], thr[j]).f1(zero_division=math.nan)
            for j in range(Y.shape[1])
        ]
    )
    return aucs, f1s


def _ci(samples: np.ndarray, level: float) -> stats.Interval:
    good = samples[~np.isnan(samples)]
    if good.size == 0:
        return stats.Interval(math.nan, math.nan, "percentile-bootstrap", level)
    a = (1 - level) / 2
    lo, hi = np.quantile(good, [a, 1 - a])
    return stats.Interval(float(lo), float(hi), "percentile-bootstrap", level)


def classification_report(
    y_true: Mapping[str, Any],
    scores: Mapping[str, Any],
    threshold: float | Mapping[str, float] = 0.5,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> ClassificationReport:
    """Per-label and macro AUC / F1 with bootstrap CIs (see the module docstring).

    F1 is nan for a label with no positive case and no positive prediction (0/0) and is
    then left out of macro F1, like AUC.
    """
    labels, Y, S = _matrix(y_true, scores)
    thr = np.array(
        [threshold[lbl] if isinstance(threshold, Mapping) else threshold for lbl in labels],
        dtype=float,
    )
    aucs, f1s = _per_label(Y, S, thr)
    rng = np.random.default_rng(seed)
    n = Y.shape[0]
    boot_auc = np.full((n_boot, len(labels)), np.nan)
    boot_f1 = np.full((n_boot, len(labels)), np.nan)
    for b in range(n_boot):
        idx = rng.integers(0, n, size=n)
        boot_auc[b], boot_f1[b] = _per_label(Y[idx], S[idx], thr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-nan replicate -> nan, skipped
        macro_auc_b = np.nanmean(boot_auc, axis=1)
        macro_f1_b = np.nanmean(boot_f1, axis=1)
    per: dict[str, LabelMetrics] = {}
    for j, lbl in enumerate(labels):
        c = stats.threshold_counts(Y[:, j], S[:, j], thr[j])
        per[lbl] = LabelMetrics(
            label=lbl,
            n=n,
            n_pos=int(Y[:, j].sum()),
            threshold=float(thr[j]),
            auc=float(aucs[j]),
            auc_ci=_ci(boot_auc[:, j], level)
            if not math.isnan(aucs[j])
            else _ci(np.array([]), level),
            precision=c.precision(zero_division=math.nan),
            recall=c.recall(zero_division=math.nan),
            f1=float(f1s[j]),
            f1_ci=_ci(boot_f1[:, j], level) if not math.isnan(f1s[j]) else _ci(np.array([]), level),
            tp=c.tp,
            fp=c.fp,
            fn=c.fn,
            tn=c.tn,
        )
    return ClassificationReport(
        labels=per,
        macro_auc=stats.macro_mean(aucs.tolist()),
        macro_auc_ci=_ci(macro_auc_b, level),
        macro_f1=stats.macro_mean(f1s.tolist()),
        macro_f1_ci=_ci(macro_f1_b, level),
        n_auc_labels=int((~np.isnan(aucs)).sum()),
        n_boot=n_boot,
        seed=seed,
    )

"""Exact, dependency-light statistics for evaluation (numpy + the standard library only).

Conventions (all documented in docs/evaluation.md):
- Accuracy CIs: Wilson score interval (default, what summaries report) and the exact
  Clopper-Pearson interval (computed by bisection on the exact binomial tail, no scipy).
- ROC AUC: the Mann-Whitney U statistic with mid-ranks, so tied scores count one half.
- Precision / recall / F1 at a threshold: predicted positive means `score >= threshold`;
  a 0/0 ratio takes `zero_division` (default 0.0, as scikit-learn does).
- Bootstrap: percentile intervals from `n_boot` resamples drawn with numpy's
  `default_rng(seed)`; resamples where the statistic is undefined (e.g. a single class
  for AUC) are skipped and counted.
- McNemar: exact two-sided binomial test when the discordant count b + c < 25, else the
  chi-square statistic with continuity correction, (|b - c| - 1)^2 / (b + c), df = 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054  # standard normal 0.975 quantile
MCNEMAR_EXACT_BELOW = 25


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    method: str
    level: float = 0.95

    def to_dict(self) -> dict[str, float | str]:
        return {"low": self.low, "high": self.high, "method": self.method, "level": self.level}


@dataclass(frozen=True)
class Proportion:
    """k successes out of n, with its CI."""

    k: int
    n: int
    value: float
    ci: Interval

    def to_dict(self) -> dict[str, object]:
        return {"k": self.k, "n": self.n, "value": self.value, "ci": self.ci.to_dict()}


def _z(level: float) -> float:
    if level == 0.95:
        return Z95
    # Inverse normal CDF by bisection on erfc (only used for non-default levels).
    target = (1.0 - level) / 2.0
    lo, hi = 0.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if 0.5 * math.erfc(mid / math.sqrt(2.0)) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def _check_kn(k: int, n: int) -> None:
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")


def wilson_ci(k: int, n: int, level: float = 0.95) -> Interval:
    """Wilson score interval for a binomial proportion (no continuity correction)."""
    _check_kn(k, n)
    if n == 0:
        return Interval(math.nan, math.nan, "wilson", level)
    z = _z(level)
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # Clamp only float round-off: the Wilson interval always lies in [0, 1].
    return Interval(max(0.0, centre - half), min(1.0, centre + half), "wilson", level)


def _log_binom_pmf(i: int, n: int, p: float) -> float:
    if p <= 0.0:
        return 0.0 if i == 0 else -math.inf
    if p >= 1.0:
        return 0.0 if i == n else -math.inf
    return (
        math.lgamma(n + 1)
        - math.lgamma(i + 1)
        - math.lgamma(n - i + 1)
        + i * math.log(p)
        + (n - i) * math.log1p(-p)
    )


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed exactly in log space."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    logs = [_log_binom_pmf(i, n, p) for i in range(k + 1)]
    m = max(logs)
    if m == -math.inf:
        return 0.0
    return min(1.0, math.exp(m) * math.fsum(math.exp(v - m) for v in logs))


def _bisect(f: Callable[[float], float], lo: float, hi: float) -> float:
    """Root of a monotone f on [lo, hi] (f(lo), f(hi) of opposite sign), to float precision."""
    flo = f(lo)
    for _ in range(200):
        mid = (lo + hi) / 2.0
        fm = f(mid)
        if (fm > 0) == (flo > 0):
            lo, flo = mid, fm
        else:
            hi = mid
        if hi - lo < 1e-15:
            break
    return (lo + hi) / 2.0


def clopper_pearson_ci(k: int, n: int, level: float = 0.95) -> Interval:
    """Exact (Clopper-Pearson) interval: inverts the two one-sided binomial tests."""
    _check_kn(k, n)
    if n == 0:
        return Interval(math.nan, math.nan, "clopper-pearson", level)
    alpha = 1.0 - level
    # lower: P(X >= k | p) = alpha/2  <=>  1 - cdf(k-1) = alpha/2
    low = 0.0 if k == 0 else _bisect(lambda p: (1 - binom_cdf(k - 1, n, p)) - alpha / 2, 0, 1)
    # upper: P(X <= k | p) = alpha/2 (cdf decreases in p)
    high = 1.0 if k == n else _bisect(lambda p: binom_cdf(k, n, p) - alpha / 2, 0, 1)
    return Interval(low, high, "clopper-pearson", level)


def accuracy(correct: Sequence[bool] | np.ndarray, method: str = "wilson") -> Proportion:
    """Accuracy of a 0/1 vector with a 95 % CI ("wilson" or "clopper-pearson")."""
    arr = np.asarray(correct, dtype=bool)
    k, n = int(arr.sum()), int(arr.size)
    ci = wilson_ci(k, n) if method == "wilson" else clopper_pearson_ci(k, n)
    return Proportion(k, n, (k / n) if n else math.nan, ci)


# --- ranking / classification --------------------------------------------------------
def midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given the mean of the ranks they span (vectorised)."""
    x = np.asarray(x, dtype=float)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts).astype(float)  # last 1-based rank of each tie group
    return ((ends - counts + 1.0 + ends) / 2.0)[inverse.ravel()]


def _binary(y_true: Sequence[int] | np.ndarray) -> np.ndarray:
    y = np.asarray(y_true)
    if y.dtype != bool and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0/1 (or bool)")
    return y.astype(bool)


def roc_auc(y_true: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve = P(score_pos > score_neg) + 0.5 P(tie); nan if one class."""
    y = _binary(y_true)
    s = np.asarray(scores, dtype=float)
    if y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} differ in shape")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return math.nan
    r = midranks(s)
    u = float(r[y].sum()) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


@dataclass(frozen=True)
class BinaryCounts:
    tp: int
    fp: int
    fn: int
    tn: int

    def precision(self, zero_division: float = 0.0) -> float:
        d = self.tp + self.fp
        return self.tp / d if d else zero_division

    def recall(self, zero_division: float = 0.0) -> float:
        d = self.tp + self.fn
        return self.tp / d if d else zero_division

    def f1(self, zero_division: float = 0.0) -> float:
        # 2TP / (2TP + FP + FN): equals the harmonic mean whenever both are defined.
        d = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / d if d else zero_division


def binary_counts(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray
) -> BinaryCounts:
    y = _binary(y_true)
    p = _binary(y_pred)
    if y.shape != p.shape:
        raise ValueError("labels and predictions differ in shape")
    return BinaryCounts(
        tp=int((y & p).sum()),
        fp=int((~y & p).sum()),
        fn=int((y & ~p).sum()),
        tn=int((~y & ~p).sum()),
    )


def threshold_counts(
    y_true: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray, threshold: float = 0.5
) -> BinaryCounts:
    """Counts with `score >= threshold` as a positive prediction."""
    return binary_counts(y_true, np.asarray(scores, dtype=float) >= threshold)


def macro_mean(values: Mapping[str, float] | Sequence[float]) -> float:
    """Unweighted mean over labels, skipping undefined (nan) ones; nan if none defined."""
    vals = np.asarray(list(values.values()) if isinstance(values, Mapping) else list(values), float)
    vals = vals[~np.isnan(vals)]
    return float(vals.mean()) if vals.size else math.nan


# --- bootstrap -------------------------------------------------------------------------
@dataclass(frozen=True)
class BootstrapResult:
    estimate: float
    ci: Interval
    n_boot: int
    n_skipped: int  # resamples where the statistic was undefined (nan)
    seed: int


def _percentile_interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    if samples.size == 0:
        return math.nan, math.nan
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(samples, [a, 1.0 - a])
    return float(lo), float(hi)


def bootstrap_ci(
    statistic: Callable[..., float],
    *arrays: Sequence[float] | np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> BootstrapResult:
    """Percentile bootstrap CI of `statistic(*arrays)`, resampling rows (same indices for all
    arrays, so pairing is preserved: pass two score arrays and a difference statistic for a
    paired bootstrap)."""
    arrs = [np.asarray(a) for a in arrays]
    if not arrs:
        raise ValueError("bootstrap_ci needs at least one array")
    n = arrs[0].shape[0]
    if any(a.shape[0] != n for a in arrs):
        raise ValueError("all arrays must have the same length")
    estimate = float(statistic(*arrs))
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot, dtype=float)
    for b in range(n_boot):
        idx = rng.integers(0, n, size=n)
        out[b] = statistic(*(a[idx] for a in arrs))
    good = out[~np.isnan(out)]
    lo, hi = _percentile_interval(good, level)
    return BootstrapResult(
        estimate,
        Interval(lo, hi, "percentile-bootstrap", level),
        n_boot,
        int(n_boot - good.size),
        seed,
    )


def bootstrap_auc(
    y_true: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> BootstrapResult:
    return bootstrap_ci(roc_auc, y_true, scores, n_boot=n_boot, seed=seed, level=level)


# --- paired accuracy -------------------------------------------------------------------
@dataclass(frozen=True)
class McNemarResult:
    b: int  # A correct, B wrong
    c: int  # A wrong, B correct
    statistic: float | None  # chi-square value (None for the exact test)
    p_value: float
    method: str  # "exact-binomial" or "chi2-continuity"


def mcnemar(b: int, c: int, exact_below: int = MCNEMAR_EXACT_BELOW) -> McNemarResult:
    """McNemar's test on the discordant counts b and c (two-sided)."""
    if b < 0 or c < 0:
        raise ValueError("discordant counts must be >= 0")
    n = b + c
    if n == 0:
        return McNemarResult(b, c, None, 1.0, "exact-binomial")
    if n < exact_below:
        p = 2.0 * binom_cdf(min(b, c), n, 0.5)
        return McNemarResult(b, c, None, min(1.0, p), "exact-binomial")
    stat = (abs(b - c) - 1.0) ** 2 / n
    # Survival function of chi-square with 1 df: P(chi2 > x) = erfc(sqrt(x / 2)).
    return McNemarResult(b, c, stat, math.erfc(math.sqrt(stat / 2.0)), "chi2-continuity")


def paired_difference_ci(b: int, c: int, n: int, level: float = 0.95) -> Interval:
    """Wald CI for acc(A) - acc(B) = (b - c) / n from paired data (Agresti, sec. 10.1):
    var = ((b + c) - (b - c)^2 / n) / n^2."""
    if n <= 0:
        return Interval(math.nan, math.nan, "wald-paired", level)
    if b + c > n:
        raise ValueError("discordant counts exceed n")
    d = (b - c) / n
    var = max(0.0, ((b + c) - (b - c) ** 2 / n)) / (n * n)
    half = _z(level) * math.sqrt(var)
    return Interval(max(-1.0, d - half), min(1.0, d + half), "wald-paired", level)

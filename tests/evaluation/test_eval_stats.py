"""Exactness of the evaluation statistics: hand-computed cases, published values, scipy/sklearn."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medlens.evaluation import stats

# Newcombe (1998), Stat Med 17:857-872, Table II: Wilson ("method 3") and exact
# Clopper-Pearson ("method 5") intervals for four classic proportions.
NEWCOMBE = [
    # k, n, wilson (lo, hi), clopper-pearson (lo, hi)
    (81, 263, (0.2553, 0.3662), (0.2527, 0.3676)),
    (15, 148, (0.0624, 0.1605), (0.0578, 0.1617)),
    (0, 20, (0.0, 0.1611), (0.0, 0.1684)),
    (1, 29, (0.0061, 0.1718), (0.0009, 0.1776)),
]


@pytest.mark.parametrize(("k", "n", "wil", "cp"), NEWCOMBE)
def test_eval_ci_published_values(k, n, wil, cp):
    w = stats.wilson_ci(k, n)
    assert (round(w.low, 4), round(w.high, 4)) == wil
    e = stats.clopper_pearson_ci(k, n)
    assert (round(e.low, 4), round(e.high, 4)) == cp


def test_eval_wilson_hand_computed():
    # k=7, n=10, z=1.959964: centre=(0.7+z^2/20)/(1+z^2/10), half=z*sqrt(0.021+z^2/400)/(1+z^2/10)
    z = 1.959963984540054
    denom = 1 + z * z / 10
    centre = (0.7 + z * z / 20) / denom
    half = z * math.sqrt(0.7 * 0.3 / 10 + z * z / 400) / denom
    ci = stats.wilson_ci(7, 10)
    assert ci.low == pytest.approx(centre - half, abs=1e-15)
    assert ci.high == pytest.approx(centre + half, abs=1e-15)
    assert round(ci.low, 4) == 0.3968 and round(ci.high, 4) == 0.8922


@pytest.mark.parametrize(
    ("k", "n"), [(0, 1), (1, 1), (3, 7), (50, 100), (637, 637), (160, 637), (2, 1000)]
)
def test_eval_ci_matches_scipy(k, n):
    scipy_stats = pytest.importorskip("scipy.stats")
    res = scipy_stats.binomtest(k, n)
    w = res.proportion_ci(method="wilson")
    e = res.proportion_ci(method="exact")
    assert stats.wilson_ci(k, n).low == pytest.approx(w.low, abs=1e-12)
    assert stats.wilson_ci(k, n).high == pytest.approx(w.high, abs=1e-12)
    assert stats.clopper_pearson_ci(k, n).low == pytest.approx(e.low, abs=1e-9)
    assert stats.clopper_pearson_ci(k, n).high == pytest.approx(e.high, abs=1e-9)


def test_eval_accuracy_and_bad_input():
    acc = stats.accuracy([True, False, True, True])
    assert (acc.k, acc.n, acc.value) == (3, 4, 0.75)
    assert acc.ci.method == "wilson"
    assert stats.accuracy([1, 0], method="clopper-pearson").ci.method == "clopper-pearson"
    assert math.isnan(stats.accuracy([]).value)
    with pytest.raises(ValueError):
        stats.wilson_ci(5, 4)


def test_eval_auc_hand_computed_with_ties():
    # pos scores 0.8, 0.5 ; neg scores 0.5, 0.2, 0.1
    # pairs: (0.8>all 3) = 3 ; (0.5 vs 0.5 tie=0.5, >0.2, >0.1) = 2.5 ; total 5.5 / 6
    y = [1, 0, 1, 0, 0]
    s = [0.8, 0.5, 0.5, 0.2, 0.1]
    assert stats.roc_auc(y, s) == pytest.approx(5.5 / 6, abs=1e-15)
    assert stats.roc_auc([1, 0], [0.3, 0.3]) == 0.5
    assert stats.roc_auc([1, 1, 0], [0.1, 0.2, 0.9]) == 0.0
    assert math.isnan(stats.roc_auc([1, 1], [0.1, 0.2]))
    assert stats.midranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]


def test_eval_auc_matches_sklearn_random():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = int(rng.integers(5, 200))
        y = rng.integers(0, 2, n)
        if y.min() == y.max():
            continue
        s = np.round(rng.normal(size=n) + y, 1)  # rounding creates many ties
        assert stats.roc_auc(y, s) == pytest.approx(metrics.roc_auc_score(y, s), abs=1e-12)


def test_eval_threshold_f1_hand_and_sklearn():
    y = [1, 1, 1, 0, 0, 0, 0]
    s = [0.9, 0.5, 0.2, 0.7, 0.1, 0.5, 0.0]
    c = stats.threshold_counts(y, s, 0.5)  # predicted: 1,1,0,1,0,1,0 (>= threshold)
    assert (c.tp, c.fp, c.fn, c.tn) == (2, 2, 1, 2)
    assert c.precision() == 0.5 and c.recall() == pytest.approx(2 / 3)
    assert c.f1() == pytest.approx(4 / 7)
    metrics = pytest.importorskip("sklearn.metrics")
    pred = (np.array(s) >= 0.5).astype(int)
    assert c.f1() == pytest.approx(metrics.f1_score(y, pred))
    empty = stats.binary_counts([0, 0], [0, 0])
    assert empty.f1() == 0.0 and math.isnan(empty.f1(zero_division=math.nan))


def test_eval_macro_mean_skips_nan():
    assert stats.macro_mean({"a": 0.5, "b": math.nan, "c": 1.0}) == 0.75
    assert math.isnan(stats.macro_mean([math.nan]))


def test_eval_mcnemar_exact_and_chi2():
    # exact: 2 * P(X <= 2 | 12, 1/2) = 2 * (1 + 12 + 66) / 4096
    r = stats.mcnemar(10, 2)
    assert r.method == "exact-binomial"
    assert r.p_value == pytest.approx(158 / 4096, abs=1e-15)
    assert stats.mcnemar(3, 3).p_value == 1.0
    assert stats.mcnemar(0, 0).p_value == 1.0
    # chi2 with continuity: (|30-10| - 1)^2 / 40 = 9.025
    r = stats.mcnemar(30, 10)
    assert r.method == "chi2-continuity" and r.statistic == pytest.approx(9.025)
    scipy_stats = pytest.importorskip("scipy.stats")
    assert r.p_value == pytest.approx(scipy_stats.chi2.sf(9.025, 1), rel=1e-12)
    assert stats.mcnemar(7, 1).p_value == pytest.approx(
        scipy_stats.binomtest(1, 8).pvalue, rel=1e-12
    )


def test_eval_paired_difference_ci():
    # b=30, c=10, n=200: d=0.1, var=(40 - 400/200)/200^2 = 38/40000
    ci = stats.paired_difference_ci(30, 10, 200)
    half = 1.959963984540054 * math.sqrt(38 / 40000)
    assert ci.low == pytest.approx(0.1 - half) and ci.high == pytest.approx(0.1 + half)


def test_eval_bootstrap_seeded_and_paired():
    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    r1 = stats.bootstrap_ci(np.mean, x, n_boot=500, seed=7)
    r2 = stats.bootstrap_ci(np.mean, x, n_boot=500, seed=7)
    assert r1 == r2
    # close to the normal-theory interval for a mean
    se = x.std(ddof=1) / math.sqrt(x.size)
    assert r1.ci.low == pytest.approx(x.mean() - 1.96 * se, abs=0.3 * se)
    assert r1.ci.high == pytest.approx(x.mean() + 1.96 * se, abs=0.3 * se)
    y = rng.integers(0, 2, 300)
    a = y + rng.normal(scale=0.8, size=300)
    # AUC(a) - AUC(b) on the same cases, both re-scored on each resample
    def auc_diff(yy, sa, sb):
        return stats.roc_auc(yy, sa) - stats.roc_auc(yy, sb)

    d = stats.bootstrap_ci(auc_diff, y, a, a, n_boot=200, seed=1)
    assert d.estimate == 0.0 and d.ci.low == 0.0 and d.ci.high == 0.0  # identical scorers
    b = rng.normal(size=300)
    d = stats.bootstrap_ci(auc_diff, y, a, b, n_boot=300, seed=1)
    assert d.ci.low > 0.1  # a is clearly better than noise
    # undefined resamples are skipped and counted
    small = stats.bootstrap_auc([1, 0, 0, 0], [0.9, 0.1, 0.2, 0.3], n_boot=200, seed=0)
    assert small.n_skipped > 0 and small.ci.low == 1.0

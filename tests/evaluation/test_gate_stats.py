"""Paired statistics of the quality gate against hand-computed values (fixed files)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from medlens.errors import DataError
from medlens.evaluation.gate_stats import load_predictions, paired_qa

DATA = Path(__file__).parent / "data" / "gate"


def _pair() -> tuple[dict[str, bool], dict[str, bool]]:
    base, _ = load_predictions(DATA / "base.jsonl")
    cand, _ = load_predictions(DATA / "candidate.jsonl")  # scored from prediction vs gold
    return base, cand


def test_fixed_files_reproduce_hand_computed_values() -> None:
    base, cand = _pair()
    p = paired_qa("medqa", base, cand, n_boot=2000, seed=0)
    # The files hold 10 both-right, 6 right->wrong, 1 wrong->right, 3 both-wrong items.
    assert (p.n, p.both_right, p.right_to_wrong, p.wrong_to_right, p.both_wrong) == (
        20,
        10,
        6,
        1,
        3,
    )
    assert (p.base.k, p.candidate.k) == (16, 11)
    assert p.base.value == 0.8 and p.candidate.value == 0.55
    assert p.difference == pytest.approx(-0.25)
    assert p.flip_rate == pytest.approx(7 / 20)
    # McNemar exact: 2 * P(X <= 1), X ~ Bin(7, 1/2) = 2 * (1 + 7) / 128 = 0.125.
    assert p.mcnemar.method == "exact-binomial"
    assert p.mcnemar.p_value == pytest.approx(0.125, abs=1e-12)


def test_bootstrap_ci_matches_an_independent_paired_resampling() -> None:
    base, cand = _pair()
    p = paired_qa("medqa", base, cand, n_boot=2000, seed=7)
    ids = sorted(base)
    a = np.array([base[i] for i in ids], float)
    b = np.array([cand[i] for i in ids], float)
    rng = np.random.default_rng(7)
    diffs = []
    for _ in range(2000):
        idx = rng.integers(0, len(ids), size=len(ids))  # one index set for both: paired
        diffs.append(b[idx].mean() - a[idx].mean())
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    assert p.bootstrap.ci.low == pytest.approx(lo) and p.bootstrap.ci.high == pytest.approx(hi)
    assert lo < -0.25 < hi and hi <= 0.0  # the 6:1 flips put the whole CI at or below 0


def test_mcnemar_stays_exact_with_many_discordant_pairs() -> None:
    # 30 discordant pairs: stats.mcnemar would switch to chi-square; the gate never does.
    base = {f"q{i}": i < 20 for i in range(40)}
    cand = {f"q{i}": 20 <= i < 30 for i in range(40)}
    p = paired_qa("x", base, cand, n_boot=200)
    assert (p.right_to_wrong, p.wrong_to_right) == (20, 10)
    exact = 2 * sum(math.comb(30, i) for i in range(11)) / 2**30
    assert p.mcnemar.method == "exact-binomial"
    assert p.mcnemar.p_value == pytest.approx(exact, rel=1e-12)


def test_unshared_items_are_left_out_and_counted() -> None:
    p = paired_qa("x", {"a": True, "b": False, "c": True}, {"a": True, "b": True, "d": False})
    assert (p.n, p.only_base, p.only_candidate, p.wrong_to_right) == (2, 1, 1, 1)
    with pytest.raises(DataError, match="share no item ids"):
        paired_qa("x", {"a": True}, {"b": True})


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"correct": True}], "needs an `id`"),
        ([{"id": 1, "correct": True}, {"id": 1, "correct": False}], "duplicate id"),
        ([{"id": 1, "prediction": "A"}], "needs `correct`"),
    ],
)
def test_bad_prediction_files_say_what_is_wrong(tmp_path, rows, message) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=message):
        load_predictions(path)
    with pytest.raises(DataError, match="not found"):
        load_predictions(tmp_path / "missing.jsonl")


def test_unparseable_prediction_counts_as_wrong(tmp_path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": "x", "prediction": None, "gold": "A"}) + "\n")
    assert load_predictions(path)[0] == {"x": False}

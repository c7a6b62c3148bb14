"""Paired statistics of the quality gate: two models scored on the same items.

Always paired (never an unpaired test on paired items): accuracy of each with its Wilson
CI, the difference (candidate - base) with a paired percentile bootstrap CI (one set of
resampled item indices for both models), McNemar's exact binomial test on the discordant
pairs, and the flips (right->wrong, wrong->right) of Dutta et al. 2024.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medlens.errors import DataError
from medlens.evaluation import records as rec
from medlens.evaluation import stats

NO_CHI2 = 10**9  # exact_below for stats.mcnemar: always the exact binomial test


@dataclass(frozen=True)
class PairedQA:
    suite: str
    n: int
    only_base: int  # items scored by one model only (left out, reported)
    only_candidate: int
    base: stats.Proportion
    candidate: stats.Proportion
    difference: float  # candidate - base
    bootstrap: stats.BootstrapResult
    mcnemar: stats.McNemarResult  # b = right->wrong, c = wrong->right
    both_right: int
    both_wrong: int

    @property
    def right_to_wrong(self) -> int:
        return self.mcnemar.b

    @property
    def wrong_to_right(self) -> int:
        return self.mcnemar.c

    @property
    def flip_rate(self) -> float:
        return (self.mcnemar.b + self.mcnemar.c) / self.n

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "n": self.n,
            "only_base": self.only_base,
            "only_candidate": self.only_candidate,
            "accuracy_base": self.base.to_dict(),
            "accuracy_candidate": self.candidate.to_dict(),
            "difference": self.difference,
            "difference_ci95": self.bootstrap.ci.to_dict(),
            "bootstrap": {"n_boot": self.bootstrap.n_boot, "seed": self.bootstrap.seed},
            "mcnemar": {"p_value": self.mcnemar.p_value, "method": self.mcnemar.method},
            "right_to_wrong": self.right_to_wrong,
            "wrong_to_right": self.wrong_to_right,
            "both_right": self.both_right,
            "both_wrong": self.both_wrong,
            "flip_rate": self.flip_rate,
        }


def _diff(base: np.ndarray, cand: np.ndarray) -> float:
    return float(cand.mean() - base.mean())


def paired_qa(
    suite: str,
    base: dict[str, bool],
    candidate: dict[str, bool],
    *,
    n_boot: int = 2000,
    seed: int = 0,
) -> PairedQA:
    """Paired comparison on the item ids both models scored."""
    shared = sorted(set(base) & set(candidate))
    if not shared:
        raise DataError(f"{suite}: the two prediction sets share no item ids.")
    a = np.array([base[i] for i in shared], dtype=bool)
    b = np.array([candidate[i] for i in shared], dtype=bool)
    r2w = int((a & ~b).sum())
    w2r = int((~a & b).sum())
    return PairedQA(
        suite=suite,
        n=len(shared),
        only_base=len(set(base) - set(candidate)),
        only_candidate=len(set(candidate) - set(base)),
        base=stats.accuracy(a),
        candidate=stats.accuracy(b),
        difference=_diff(a.astype(float), b.astype(float)),
        bootstrap=stats.bootstrap_ci(
            _diff, a.astype(float), b.astype(float), n_boot=n_boot, seed=seed
        ),
        mcnemar=stats.mcnemar(r2w, w2r, exact_below=NO_CHI2),
        both_right=int((a & b).sum()),
        both_wrong=int((~a & ~b).sum()),
    )


def _correct(row: dict[str, Any], where: str) -> bool:
    if "correct" in row:
        return bool(row["correct"])
    if "prediction" in row and "gold" in row:
        return row["prediction"] is not None and str(row["prediction"]) == str(row["gold"])
    raise DataError(f"{where}: a record needs `correct`, or `prediction` and `gold`.")


def load_predictions(path: Path) -> tuple[dict[str, bool], dict[str, Any]]:
    """{item id: correct} from a `medlens eval` run folder or a JSONL of records
    (`id` + `correct`, or `id` + `prediction` + `gold`), and the run's metadata if any."""
    path = Path(path)
    file = path / rec.RECORDS if path.is_dir() else path
    if not file.is_file():
        raise DataError(f"Predictions not found: {file}")
    try:
        rows = rec.read_records(file)
    except DataError:
        raise
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{file} is not JSONL: {exc}") from exc
    if not rows:
        raise DataError(f"No records in {file}.")
    out: dict[str, bool] = {}
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict) or "id" not in row:
            raise DataError(f"{file}:{i}: a record needs an `id`.")
        key = str(row["id"])
        if key in out:
            raise DataError(f"{file}:{i}: duplicate id {key!r}.")
        out[key] = _correct(row, f"{file}:{i}")
    meta_path = (path if path.is_dir() else path.parent) / rec.RUN
    meta = rec.read_json(meta_path) if path.is_dir() and meta_path.is_file() else {}
    return out, meta

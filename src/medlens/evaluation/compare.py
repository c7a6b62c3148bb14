"""Paired comparison of two QA runs on the items both scored (McNemar's test)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medlens.errors import DataError
from medlens.evaluation import records as rec
from medlens.evaluation import stats


@dataclass(frozen=True)
class Comparison:
    run_a: str
    run_b: str
    n: int  # shared item ids
    only_a: int
    only_b: int
    acc_a: stats.Proportion
    acc_b: stats.Proportion
    difference: float  # acc_a - acc_b
    difference_ci: stats.Interval
    both_correct: int
    b: int  # A right, B wrong
    c: int  # A wrong, B right
    both_wrong: int
    test: stats.McNemarResult
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_a": self.run_a,
            "run_b": self.run_b,
            "n": self.n,
            "only_in_a": self.only_a,
            "only_in_b": self.only_b,
            "accuracy_a": self.acc_a.to_dict(),
            "accuracy_b": self.acc_b.to_dict(),
            "difference": self.difference,
            "difference_ci95": self.difference_ci.to_dict(),
            "both_correct": self.both_correct,
            "a_only_correct": self.b,
            "b_only_correct": self.c,
            "both_wrong": self.both_wrong,
            "mcnemar": {
                "statistic": self.test.statistic,
                "p_value": self.test.p_value,
                "method": self.test.method,
            },
            "warnings": list(self.warnings),
        }


def _load(run: Path) -> tuple[dict[str, Any], dict[str, bool]]:
    path = run / rec.RECORDS if run.is_dir() else run
    records = rec.read_records(path)
    if not records:
        raise DataError(f"No scored items in {path}.")
    meta_path = (run if run.is_dir() else run.parent) / rec.RUN
    meta = rec.read_json(meta_path) if meta_path.is_file() else {}
    return meta, {str(r["id"]): bool(r["correct"]) for r in records}


def compare_runs(run_a: Path, run_b: Path) -> Comparison:
    meta_a, a = _load(Path(run_a))
    meta_b, b = _load(Path(run_b))
    shared = sorted(set(a) & set(b))
    if not shared:
        raise DataError("The two runs share no item ids; nothing to compare.")
    warnings = []
    for key in ("task", "data_sha256"):
        if meta_a.get(key) and meta_b.get(key) and meta_a[key] != meta_b[key]:
            warnings.append(f"runs differ in {key}: {meta_a[key]} vs {meta_b[key]}")
    ca = [a[i] for i in shared]
    cb = [b[i] for i in shared]
    n11 = sum(1 for x, y in zip(ca, cb, strict=True) if x and y)
    n10 = sum(1 for x, y in zip(ca, cb, strict=True) if x and not y)
    n01 = sum(1 for x, y in zip(ca, cb, strict=True) if not x and y)
    n00 = len(shared) - n11 - n10 - n01
    n = len(shared)
    return Comparison(
        run_a=str(run_a),
        run_b=str(run_b),
        n=n,
        only_a=len(set(a) - set(b)),
        only_b=len(set(b) - set(a)),
        acc_a=stats.accuracy(ca),
        acc_b=stats.accuracy(cb),
        difference=(n10 - n01) / n,
        difference_ci=stats.paired_difference_ci(n10, n01, n),
        both_correct=n11,
        b=n10,
        c=n01,
        both_wrong=n00,
        test=stats.mcnemar(n10, n01),
        warnings=tuple(warnings),
    )

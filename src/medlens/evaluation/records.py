"""A run folder: `records.jsonl` (one line per scored item), `run.json`, `summary.json`.

Records are appended and flushed one at a time, so an interrupted run loses at most the
item in flight; a torn last line (crash mid-write) is dropped when the run resumes.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medlens.errors import DataError
from medlens.evaluation import stats

RECORDS = "records.jsonl"
RUN = "run.json"
SUMMARY = "summary.json"
# Metadata that must match for a folder to be resumed (anything else may differ).
RESUME_KEYS = (
    "task",
    "model",
    "scoring",
    "shots",
    "seed",
    "prompt",
    "prompt_version",
    "prompt_sha256",
    "data_sha256",
    "fewshot_sha256",
    "max_new_tokens",
)


def read_records(path: Path, *, repair: bool = False) -> list[dict[str, Any]]:
    """All complete records; a torn final line is ignored (and cut off when `repair`)."""
    if not path.is_file():
        return []
    out: list[dict[str, Any]] = []
    good_bytes = 0
    with open(path, "rb") as fh:
        data = fh.read()
    lines = data.split(b"\n")
    for i, line in enumerate(lines):
        if not line.strip():
            good_bytes += len(line) + (1 if i < len(lines) - 1 else 0)
            continue
        last = i == len(lines) - 1  # no trailing newline: possibly torn
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            if last:
                break
            msg = f"{path}: line {i + 1} is not valid JSON; the run folder is damaged."
            raise DataError(msg) from err
        if last:  # a complete JSON object without its newline: keep it, add the newline
            out.append(rec)
            good_bytes += len(line)
            if repair:
                with open(path, "r+b") as fh:
                    fh.truncate(good_bytes)
                    fh.seek(good_bytes)
                    fh.write(b"\n")
            return out
        out.append(rec)
        good_bytes += len(line) + 1
    if repair and good_bytes != len(data):
        with open(path, "r+b") as fh:
            fh.truncate(good_bytes)
    return out


class RecordWriter:
    def __init__(self, path: Path) -> None:
        # Held open across many writes (one per scored item); closed by close().
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path} not found: is this a `medlens eval` output folder?") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON ({exc.msg}).") from exc


@dataclass(frozen=True)
class Summary:
    n: int
    correct: int
    accuracy: stats.Proportion
    accuracy_exact_ci: stats.Interval
    unparseable: int
    gold_counts: dict[str, int]
    prediction_counts: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "correct": self.correct,
            "accuracy": self.accuracy.value,
            "ci95": self.accuracy.ci.to_dict(),
            "ci95_exact": self.accuracy_exact_ci.to_dict(),
            "unparseable": self.unparseable,
            "gold_counts": self.gold_counts,
            "prediction_counts": self.prediction_counts,
        }

    def line(self) -> str:
        a = self.accuracy
        if not self.n:
            return "accuracy: no items scored"
        return (
            f"accuracy {a.value:.1%} ({a.k}/{a.n}), 95% CI {a.ci.low:.1%}-{a.ci.high:.1%} "
            f"(Wilson); unparseable {self.unparseable}"
        )


def summarize(records: list[dict[str, Any]]) -> Summary:
    """Accuracy over records; unparseable answers count as wrong."""
    correct = [bool(r["correct"]) for r in records]
    acc = stats.accuracy(correct)
    k, n = acc.k, acc.n
    return Summary(
        n=n,
        correct=k,
        accuracy=acc,
        accuracy_exact_ci=stats.clopper_pearson_ci(k, n)
        if n
        else stats.Interval(float("nan"), float("nan"), "clopper-pearson"),
        unparseable=sum(1 for r in records if r.get("prediction") is None),
        gold_counts=dict(sorted(Counter(str(r["gold"]) for r in records).items())),
        prediction_counts=dict(sorted(Counter(str(r.get("prediction")) for r in records).items())),
    )

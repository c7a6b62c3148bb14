"""Read chest X-ray labels (the shared CSV formats) and scorer outputs, and join them.

Labels:
- NIH ChestX-ray14 `labels.csv`: `image_file` plus one 0/1 column per finding.
- COVID-19 collection `metadata.csv`: `image_file` plus `finding` (a diagnosis, or several
  joined by ", " as in "COVID-19, ARDS"); each distinct diagnosis becomes a 0/1 label.
Any CSV with an `image_file` (or `id`) column and 0/1 columns works like the NIH one.

Scores: CSV with `image_file` (or `id`) plus one numeric column per label, JSONL rows
`{"image_file": ..., "scores": {label: score}}` (flat label keys also accepted), or the
JSON that `medlens classify IMAGES --json` prints (`results[].image` / `.probabilities`).
Rows are joined on the key; when exact keys differ (absolute vs relative paths) file
base names are used if they are unique on both sides.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from medlens.errors import DataError
from medlens.evaluation.datasets import jsonl_objects
from medlens.tasks.retrieval.cases_csv import NIH_FINDINGS

KEY_COLUMNS = ("image_file", "id", "image", "path")


def _key_column(fields: list[str], path: Path) -> str:
    for k in KEY_COLUMNS:
        if k in fields:
            return k
    raise DataError(f"{path}: needs one of the columns {', '.join(KEY_COLUMNS)}.")


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    if not path.is_file():
        raise DataError(f"File not found: {path}")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def read_labels(path: Path, labels: list[str] | None = None) -> dict[str, dict[str, int]]:
    """{image key: {label: 0/1}} from an NIH-style or COVID-style CSV."""
    fields, rows = _read_csv(path)
    key = _key_column(fields, path)
    out: dict[str, dict[str, int]] = {}
    if "finding" in fields and not set(NIH_FINDINGS) & set(fields):
        names = sorted(
            {f.strip() for r in rows for f in (r["finding"] or "").split(",") if f.strip()}
        )
        for r in rows:
            present = {f.strip() for f in (r["finding"] or "").split(",")}
            out[r[key]] = {n: int(n in present) for n in names}
    else:
        nih = [f for f in NIH_FINDINGS if f in fields]
        cols = nih or [f for f in fields if f != key and _is_binary_column(rows, f)]
        for r in rows:
            out[r[key]] = {c: int(r[c]) for c in cols}
    if labels:
        unknown = [lbl for lbl in labels if rows and lbl not in next(iter(out.values()))]
        if unknown:
            raise DataError(f"{path}: no label column(s) {unknown}.")
        out = {k: {lbl: v[lbl] for lbl in labels} for k, v in out.items()}
    if not out:
        raise DataError(f"{path}: no rows.")
    return out


def _is_binary_column(rows: list[dict[str, str]], col: str) -> bool:
    return bool(rows) and all((r.get(col) or "").strip() in ("0", "1") for r in rows)


def read_scores(path: Path) -> dict[str, dict[str, float]]:
    """{image key: {label: score}} from a CSV or JSONL scores file."""
    out: dict[str, dict[str, float]] = {}
    if path.suffix.lower() in (".jsonl", ".json"):
        if not path.is_file():
            raise DataError(f"File not found: {path}")
        classified = _classify_output(path)
        if classified is not None:
            return classified
        for lineno, row in jsonl_objects(path):
            key = _key_column(list(row), path)
            vals = row.get("scores", {k: v for k, v in row.items() if k not in KEY_COLUMNS})
            out[str(row[key])] = {
                k: _num(v, path, lineno)
                for k, v in vals.items()
                if isinstance(v, int | float | str) and k not in KEY_COLUMNS
            }
    else:
        fields, rows = _read_csv(path)
        key = _key_column(fields, path)
        for lineno, r in enumerate(rows, 2):
            out[r[key]] = {
                c: _num(r[c], path, lineno) for c in fields if c != key and _looks_numeric(r[c])
            }
    if not out:
        raise DataError(f"{path}: no score rows.")
    return out


def _classify_output(path: Path) -> dict[str, dict[str, float]] | None:
    """Scores from `medlens classify --json` output; None when the file is not that."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None  # JSONL (several documents) or broken: the line reader reports it
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
        return None
    out: dict[str, dict[str, float]] = {}
    for i, row in enumerate(doc["results"], 1):
        if not isinstance(row, dict) or not isinstance(row.get("probabilities"), dict):
            raise DataError(f"{path}: result {i} has no probabilities.")
        out[str(row.get("image", i))] = {
            k: _num(v, path, i) for k, v in row["probabilities"].items()
        }
    if not out:
        raise DataError(f"{path}: no score rows.")
    return out


def _looks_numeric(v: Any) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def _num(v: Any, path: Path, lineno: int) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise DataError(f"{path}:{lineno}: score {v!r} is not a number.") from None
    if math.isnan(x):
        raise DataError(f"{path}:{lineno}: score is NaN.")
    return x


def join(
    labels: dict[str, dict[str, int]],
    scores: dict[str, dict[str, float]],
    wanted: list[str] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[str]]:
    """(y_true, scores) per label over the images present in both, and the joined keys."""
    keys = [k for k in labels if k in scores]
    if not keys:
        lb = {Path(k).name: k for k in labels}
        sb = {Path(k).name: k for k in scores}
        if len(lb) == len(labels) and len(sb) == len(scores):
            scores = {lb[name]: scores[sk] for name, sk in sb.items() if name in lb}
            keys = [k for k in labels if k in scores]
    if not keys:
        raise DataError(
            "No image in the scores file matches the labels file (join key: "
            "image_file / id, or unique file base names)."
        )
    label_names = list(next(iter(labels.values())))
    score_names = set.intersection(*(set(scores[k]) for k in keys))
    common = [n for n in (wanted or label_names) if n in score_names]
    if wanted:
        missing = [n for n in wanted if n not in common]
        if missing:
            raise DataError(f"Label(s) {missing} are missing from the labels or scores.")
    if not common:
        raise DataError(
            f"No label is in both files (labels: {label_names[:6]}..., "
            f"scores: {sorted(score_names)[:6]}...)."
        )
    y = {n: np.array([labels[k][n] for k in keys], dtype=int) for n in common}
    s = {n: np.array([scores[k][n] for k in keys], dtype=float) for n in common}
    return y, s, keys

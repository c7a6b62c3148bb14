"""Grounding and change evaluation: box IoU against NIH / Chest ImaGenome references, and
change-label accuracy / macro-F1 against MS-CXR-T.

References: NIH ChestX-ray14 `BBox_List_2017.csv` (`Image Index,Finding Label,Bbox
[x,y,w,h]` then four numbers, pixels) or Chest ImaGenome-style JSON (a file or a folder:
`{"image_id", "objects": [{"bbox_name", "original_x1", "original_y1", "original_x2",
"original_y2"}]}`). Predictions: a CSV of the NIH layout, or a folder of MedLens
interpretation JSON (`regions`; the image named by `provenance.inputs[].source_name`).
MS-CXR-T temporal classification: one row per current image (`dicom_id`) with a column
per finding holding improving / stable / worsening (blank: not labelled).
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medlens.errors import ConfigError

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 pixels
Key = tuple[str, str]  # (image stem, label key)
CLASSES = ("improving", "stable", "worsening")
_MEDLENS_TO_MSCXRT = {
    "improved": "improving",
    "resolved": "improving",
    "stable": "stable",
    "new": "worsening",
    "worsened": "worsening",
}
_ID_COLUMNS = {"study_id", "dicom_id", "previous_study_id", "previous_dicom_id", "subject_id"}


def image_key(name: str) -> str:
    return Path(str(name).strip()).stem.lower()


def label_key(label: str) -> str:
    """One key for 'Effusion', 'right pleural effusion' and 'Pleural Effusion'."""
    from medlens.tasks.interpret.labeler import label_report

    found = list(label_report(label))
    if len(found) == 1:
        return found[0].lower()
    return " ".join(re.findall(r"[a-z0-9]+", label.lower()))


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def read_boxes(path: Path) -> dict[Key, list[Box]]:
    """Boxes from an NIH CSV, a Chest ImaGenome JSON (file/folder) or MedLens JSON folder."""
    if not path.exists():
        raise ConfigError(f"No such file or folder: {path}")
    if path.suffix.lower() == ".csv":
        return _nih_csv(path)
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    out: dict[Key, list[Box]] = defaultdict(list)
    for f in files:
        try:
            data = json.loads(f.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{f}: not readable JSON ({exc}).") from None
        for key, box in _json_boxes(data, f):
            out[key].append(box)
    return dict(out)


def _nih_csv(path: Path) -> dict[Key, list[Box]]:
    out: dict[Key, list[Box]] = defaultdict(list)
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows or not rows[0] or rows[0][0].strip() != "Image Index":
        raise ConfigError(
            f"{path}: expected the header 'Image Index,Finding Label,Bbox [x,y,w,h]'."
        )
    for n, row in enumerate(rows[1:], 2):
        if not any(c.strip() for c in row):
            continue
        try:
            x, y, w, h = (float(v) for v in row[2:6])
        except ValueError:
            raise ConfigError(f"{path}:{n}: four numbers (x, y, w, h) expected.") from None
        out[(image_key(row[0]), label_key(row[1]))].append((x, y, x + w, y + h))
    return dict(out)


def _json_boxes(data: Any, source: Path) -> list[tuple[Key, Box]]:
    if isinstance(data, dict) and "regions" in data:  # a MedLens Interpretation
        names = {i.get("image_index"): i.get("source_name") for i in _inputs(data)}
        out = []
        for r in data.get("regions") or []:
            image = names.get(r.get("image_index")) or source.stem
            out.append(((image_key(image), label_key(r["label"])), tuple(r["box"])))
        return out
    if isinstance(data, dict) and "objects" in data:  # Chest ImaGenome scene graph
        image = str(data.get("image_id") or source.stem)
        return [
            (
                (image_key(image), label_key(str(o.get("bbox_name", "")))),
                tuple(
                    float(o[k])
                    for k in ("original_x1", "original_y1", "original_x2", "original_y2")
                ),
            )
            for o in data["objects"]
        ]
    raise ConfigError(f"{source}: neither a MedLens interpretation nor an ImaGenome scene graph.")


def _inputs(data: dict[str, Any]) -> list[dict[str, Any]]:
    return list((data.get("provenance") or {}).get("inputs") or [])


@dataclass
class GroundingScores:
    mean_iou: float
    hit_rate: float
    n_reference: int
    per_label: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def score_grounding(
    pred: dict[Key, list[Box]], ref: dict[Key, list[Box]], threshold: float = 0.5
) -> GroundingScores:
    """Per reference box: the best IoU of any prediction of that image and label (0 when
    none); mean IoU, hit rate at IoU >= threshold, and mean IoU per label."""
    per_label: dict[str, list[float]] = defaultdict(list)
    for key, boxes in ref.items():
        for box in boxes:
            best = max((iou(box, p) for p in pred.get(key, [])), default=0.0)
            per_label[key[1]].append(best)
    values = [v for vs in per_label.values() for v in vs]
    if not values:
        raise ConfigError("The reference holds no boxes.")
    return GroundingScores(
        mean_iou=sum(values) / len(values),
        hit_rate=sum(v >= threshold for v in values) / len(values),
        n_reference=len(values),
        per_label={k: sum(v) / len(v) for k, v in sorted(per_label.items())},
    )


def read_changes(path: Path) -> dict[tuple[str, str], str]:
    """(image, finding key) -> improving / stable / worsening, from an MS-CXR-T CSV or a
    folder of MedLens interpretations (their `comparison.changes`)."""
    if not path.exists():
        raise ConfigError(f"No such file or folder: {path}")
    out: dict[tuple[str, str], str] = {}
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or "dicom_id" not in reader.fieldnames:
                raise ConfigError(f"{path}: MS-CXR-T layout needs a 'dicom_id' column.")
            for row in reader:
                for col, value in row.items():
                    value = (value or "").strip().lower()
                    if col in _ID_COLUMNS or not value:
                        continue
                    if value not in CLASSES:
                        raise ConfigError(f"{path}: {col}={value!r} is not one of {CLASSES}.")
                    out[(image_key(row["dicom_id"]), label_key(col.replace("_", " ")))] = value
        return out
    for f in sorted(path.glob("*.json")) if path.is_dir() else [path]:
        data = json.loads(f.read_text("utf-8"))
        current = next((i.get("source_name") for i in _inputs(data)), None) or f.stem
        for ch in (data.get("comparison") or {}).get("changes") or []:
            label = _MEDLENS_TO_MSCXRT.get(ch.get("change", ""))
            if label:
                out[(image_key(current), label_key(ch["finding"]))] = label
    return out


def score_changes(pred: dict[tuple[str, str], str], ref: dict[tuple[str, str], str]) -> dict:
    """Accuracy and macro-F1 over the labelled reference pairs (a missing prediction is
    wrong for accuracy and a false negative for its class)."""
    if not ref:
        raise ConfigError("The reference holds no change labels.")
    pairs = [(ref[k], pred.get(k)) for k in ref]
    accuracy = sum(r == p for r, p in pairs) / len(pairs)
    f1s = {}
    for c in CLASSES:
        tp = sum(r == c and p == c for r, p in pairs)
        fp = sum(r != c and p == c for r, p in pairs)
        fn = sum(r == c and p != c for r, p in pairs)
        f1s[c] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    present = [c for c in CLASSES if any(r == c for r, _ in pairs)]
    macro = sum(f1s[c] for c in present) / len(present)
    return {"accuracy": accuracy, "macro_f1": macro, "n": len(pairs), "per_class_f1": f1s}

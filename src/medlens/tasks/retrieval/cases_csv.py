"""Read labelled image collections (the shared CXR CSV formats, or a generic CSV / folder).

Formats recognised by their columns:
- NIH ChestX-ray14 `labels.csv`: `image_file`, `finding_labels`, one 0/1 column per finding.
- COVID-19 image collection `metadata.csv`: `image_file`, `finding`, `clinical_notes`, ICU fields.
- Generic: `image_file` (or `image` / `path`), optional `case_id`, `report`; every other
  column becomes a label (0/1 values as integers, anything else as text).
A `patient_id` / `patientid` column becomes `patient_group`, a pseudonymous hash used to
keep one patient's images in one cross-validation fold.

The demo label `urgent` is DERIVED (it is not a clinical triage truth; it only exercises
probe training end to end):
- NIH: urgent = Pneumothorax (a finding that needs prompt attention).
- COVID: urgent = 1 if the patient went to / was in the ICU, was intubated, or did not
  survive; 0 if at least one of those fields is known and none is positive; missing
  (excluded from training) if all are blank.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medlens.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom"}
CSV_NAMES = ("labels.csv", "metadata.csv", "cases.csv")
GROUP_KEY = "patient_group"  # pseudonymous patient key (from patient_id / patientid)
NIH_FINDINGS = (  # the NIH ChestX-ray14 finding columns
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
# Metadata columns that are not labels (identifiers, provenance, sizes).
_SKIP_COLUMNS = {
    "image_file",
    "image",
    "path",
    "case_id",
    "report",
    "sha256",
    "width",
    "height",
    "mode",
    "patient_id",
    "patientid",
    "follow_up",
    "source_sha256",
    "source_path",
    "url",
    "doi",
    "date",
    "location",
    "orig_width",
    "orig_height",
    "conversion",
    "clinical_notes",
    "other_notes",
    "license",
    "license_normalized",
    "noncommercial_only",
    "source_site",
}


@dataclass(frozen=True)
class CaseInput:
    """One image to add to a library, with what is known about it."""

    path: Path
    case_id: str
    labels: dict[str, Any] = field(default_factory=dict)
    report: str | None = None
    source: str = ""


def _binary(value: str) -> int | None:
    v = value.strip()
    if v in ("0", "1"):
        return int(v)
    return None


def _yes(value: str | None) -> bool | None:
    v = (value or "").strip().upper()
    return True if v == "Y" else False if v == "N" else None


def _nih_row(row: dict[str, str]) -> dict[str, Any]:
    labels: dict[str, Any] = {"finding_labels": row.get("finding_labels", "")}
    for name in NIH_FINDINGS:
        if name in row:
            b = _binary(row[name])
            if b is None:
                raise DataError(f"labels.csv: column {name} must be 0/1, got {row[name]!r}.")
            labels[name] = b
    labels["No Finding"] = int(row.get("finding_labels", "").strip() == "No Finding")
    labels["urgent"] = labels.get("Pneumothorax", 0)
    return labels


def _covid_row(row: dict[str, str]) -> dict[str, Any]:
    finding = row.get("finding", "").strip()
    parts = {p.strip() for p in finding.split(",") if p.strip()}
    labels: dict[str, Any] = {
        "finding": finding,
        "view": row.get("view", ""),
        "COVID-19": int("COVID-19" in parts),
        "No Finding": int(finding == "No Finding"),
        # Every other finding in this collection is a pneumonia (viral, bacterial,
        # fungal, ARDS from pneumonia); "No Finding" is the only non-pneumonia label.
        "Pneumonia": int(finding not in ("", "No Finding")),
    }
    flags = [_yes(row.get(c)) for c in ("went_icu", "in_icu", "intubated")]
    died = _yes(row.get("survival"))
    flags.append(None if died is None else not died)
    if any(f is True for f in flags):
        labels["urgent"] = 1
    elif any(f is not None for f in flags):
        labels["urgent"] = 0
    return labels


def _generic_row(row: dict[str, str]) -> dict[str, Any]:
    labels: dict[str, Any] = {}
    for key, value in row.items():
        if key is None or key in _SKIP_COLUMNS or value is None or not value.strip():
            continue
        b = _binary(value)
        labels[key] = b if b is not None else value.strip()
    return labels


def read_cases_csv(csv_path: Path) -> list[CaseInput]:
    """Cases from a labelled CSV; image paths are relative to the CSV's folder."""
    try:
        with csv_path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"Cannot read {csv_path}: {exc}") from exc
    if not rows:
        raise DataError(f"{csv_path} has no rows.")
    cols = set(rows[0])
    image_col = next((c for c in ("image_file", "image", "path") if c in cols), None)
    if image_col is None:
        raise DataError(f"{csv_path}: needs an image_file (or image / path) column.")
    if "finding_labels" in cols:
        kind, parse = "nih", _nih_row
    elif "finding" in cols and "clinical_notes" in cols:
        kind, parse = "covid", _covid_row
    else:
        kind, parse = "generic", _generic_row
    base = csv_path.parent
    cases: list[CaseInput] = []
    for i, row in enumerate(rows):
        rel = (row.get(image_col) or "").strip()
        if not rel:
            raise DataError(f"{csv_path} row {i + 2}: empty {image_col}.")
        path = (base / rel).resolve()
        report = row.get("report") or row.get("clinical_notes") or None
        case_id = (row.get("case_id") or "").strip() or Path(rel).as_posix()
        labels = parse(row)
        patient = (row.get("patient_id") or row.get("patientid") or "").strip()
        if patient:
            # Images of one patient must stay in one cross-validation fold (else probe
            # metrics leak); a pseudonymous key is enough for that, not the source's id.
            digest = hashlib.sha256(f"{kind}:{patient}".encode()).hexdigest()[:12]
            labels[GROUP_KEY] = f"p-{digest}"
        cases.append(
            CaseInput(
                path, case_id, labels, report.strip() if report else None, f"{kind}:{csv_path.name}"
            )
        )
    return cases


def find_cases(source: Path) -> list[CaseInput]:
    """Cases from a CSV file, or a folder (its labels.csv/metadata.csv, else all images)."""
    if source.is_file():
        if source.suffix.lower() == ".csv":
            return read_cases_csv(source)
        return [CaseInput(source.resolve(), source.name, source="file")]
    if not source.is_dir():
        raise DataError(f"{source} is neither a folder nor a CSV file.")
    for name in CSV_NAMES:
        if (source / name).is_file():
            return read_cases_csv(source / name)
    return [
        CaseInput(p.resolve(), p.relative_to(source).as_posix(), source="folder")
        for p in _walk_images(source)
    ]


def _walk_images(root: Path) -> Iterator[Path]:
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."):
            yield p

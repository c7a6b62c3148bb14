"""Batches: turn a folder or a CSV of image files into studies with interpret jobs.

Each input goes through the same intake as an upload to the server
(`medlens.jobs.intake`: checked, de-identified, decoded once), so only de-identified
bytes reach the store. Re-running the same batch is safe: the same image set is the same
study, and a study whose job is queued, running or done gets no second job.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medlens.errors import DataError, MedLensError

CONTEXT_COLUMNS = ("indication", "age", "sex", "language")
SKIP_SUFFIXES = {".csv", ".json", ".jsonl", ".txt", ".md", ".zip"}


@dataclass(frozen=True)
class BatchItem:
    key: str  # what the user calls this study (file, folder or CSV `study` value)
    paths: tuple[Path, ...]
    context: dict[str, Any] = field(default_factory=dict)


@dataclass
class Submitted:
    item: BatchItem
    study_id: str | None = None
    job_id: str | None = None
    created: bool = False
    error: str | None = None  # refused at intake (not an image, not a chest X-ray...)


def _files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and p.suffix.lower() not in SKIP_SUFFIXES
    )


def collect(source: Path, *, group_by_folder: bool = False) -> list[BatchItem]:
    """Inputs of a batch: every file of a folder (one study each, or one per folder),
    or the rows of a CSV with a `path` column (optional `study` groups rows)."""
    if source.is_dir():
        files = _files(source)
        if not group_by_folder:
            return [BatchItem(str(p.relative_to(source)), (p,)) for p in files]
        groups: dict[Path, list[Path]] = {}
        for p in files:
            groups.setdefault(p.parent, []).append(p)
        return [BatchItem(str(d.relative_to(source)) or ".", tuple(ps)) for d, ps in groups.items()]
    if source.suffix.lower() == ".csv" and source.is_file():
        return _from_csv(source)
    raise DataError(f"{source}: give a folder of images or a CSV file with a 'path' column.")


def _from_csv(source: Path) -> list[BatchItem]:
    with source.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "path" not in reader.fieldnames:
            raise DataError(f"{source}: the CSV needs a 'path' column (and may have 'study').")
        grouped: dict[str, tuple[list[Path], dict[str, Any]]] = {}
        for n, row in enumerate(reader, start=2):
            raw = (row.get("path") or "").strip()
            if not raw:
                raise DataError(f"{source}, line {n}: empty 'path'.")
            path = Path(raw).expanduser()
            path = path if path.is_absolute() else source.parent / path
            key = (row.get("study") or "").strip() or raw
            context = {c: row[c].strip() for c in CONTEXT_COLUMNS if (row.get(c) or "").strip()}
            paths, ctx = grouped.setdefault(key, ([], {}))
            paths.append(path)
            ctx.update(context)
    return [BatchItem(k, tuple(ps), ctx) for k, (ps, ctx) in grouped.items()]


def submit_one(store: Any, settings: Any, item: BatchItem, *, kind: str) -> Submitted:
    from medlens.jobs.intake import prepare, submit_study

    out = Submitted(item)
    try:
        prepared = []
        for position, path in enumerate(item.paths, start=1):
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
            prepared.append(prepare(data, position, settings))
        context = {"language": settings.language, **item.context}
        if settings.demo:  # the demo server's key: real-mode views never show it
            context["demo"] = True
        sub = submit_study(store, prepared, context, kind=kind)
    except MedLensError as exc:
        out.error = str(exc)
        return out
    out.study_id, out.created = sub.study.id, sub.created
    out.job_id = sub.job.id if sub.job is not None else None
    return out


def submit(
    store: Any,
    settings: Any,
    items: Iterable[BatchItem],
    *,
    kind: str = "interpret",
    on_item: Callable[[Submitted], None] | None = None,
) -> list[Submitted]:
    done = []
    for item in items:
        sub = submit_one(store, settings, item, kind=kind)
        done.append(sub)
        if on_item is not None:
            on_item(sub)
    return done


def _row(store: Any, sub: Submitted) -> dict[str, Any]:
    job = store.get_job(sub.job_id) if sub.job_id else None
    interp = store.get_interpretation(sub.study_id) if sub.study_id else None
    return {
        "key": sub.item.key,
        "files": [str(p) for p in sub.item.paths],
        "study_id": sub.study_id,
        "job_id": sub.job_id,
        "status": "refused" if sub.error else (job.status if job else "missing"),
        "error": sub.error or (job.error if job else None),
        "result": job.result if job else None,
        "interpretation": interp.model_dump(mode="json") if interp is not None else None,
    }


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def export(store: Any, submitted: list[Submitted], path: Path) -> int:
    """Write one record per batch item to .jsonl (everything) or .csv (the headline)."""
    rows = [_row(store, s) for s in submitted]
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with path.open("w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    elif suffix == ".csv":
        cols = ["key", "files", "study_id", "job_id", "status", "error", "urgency",
                "impression", "findings", "test_model", "disclaimer"]  # fmt: skip
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=cols)
            writer.writeheader()
            for row in rows:
                interp = row["interpretation"]
                writer.writerow({
                    "key": row["key"], "files": ";".join(row["files"]),
                    "study_id": row["study_id"], "job_id": row["job_id"],
                    "status": row["status"], "error": row["error"],
                    "urgency": _dig(interp, "urgency", "level"),
                    "impression": _dig(interp, "report", "impression"),
                    "findings": _dig(interp, "report", "findings"),
                    "test_model": _dig(interp, "provenance", "test_model"),
                    "disclaimer": _dig(interp, "disclaimer"),
                })  # fmt: skip
    else:
        raise DataError(f"{path}: export to a .jsonl or .csv file.")
    return len(rows)

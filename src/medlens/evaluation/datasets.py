"""Readers for the shared medical QA files (MedQA, MedMCQA, PubMedQA) into one item type.

Field meanings are those of each data folder's MANIFEST.md. Every reader validates what
it relies on (ids unique, gold label among the options) and names the file and line of
the first bad row, so a corrupt file fails loudly instead of scoring wrongly.

Default files live in the shared data folder: `$MEDLENS_SHARED_DATA` if set, else the
repository's sibling `../shared/data` (next to a source checkout), else `./shared/data`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medlens.errors import DataError

PUBMEDQA_LABELS = ("yes", "no", "maybe")


@dataclass(frozen=True)
class QAItem:
    """One question. `options` maps label -> text in display order (A-D, or yes/no/maybe)."""

    id: str
    question: str
    options: dict[str, str]
    gold: str
    context: str = ""  # PubMedQA abstract paragraphs
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    default_file: str  # relative to the shared data folder
    fewshot_file: str | None  # disjoint pool for shots; None = same file minus the item
    reader: Callable[[Path], list[QAItem]]
    prompt: str  # default prompt file name (evaluation/prompts/<prompt>.toml)


def shared_data_dir() -> Path:
    """Where the shared data folder is (see module docstring); may not exist."""
    env = os.environ.get("MEDLENS_SHARED_DATA")
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parents[3]  # src/medlens/evaluation/<file> -> repo
    sibling = repo.parent / "shared" / "data"
    if sibling.is_dir():
        return sibling
    return Path.cwd() / "shared" / "data"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if not path.is_file():
        raise DataError(
            f"Data file not found: {path}. Pass --data FILE or set MEDLENS_SHARED_DATA "
            "to the folder that holds medqa/, medmcqa/ and pubmedqa/."
        )
    yield from jsonl_objects(path)


def jsonl_objects(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSONL file; DataError names
    the line that is not a JSON object."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg}).") from exc
            if not isinstance(row, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object per line.")
            yield lineno, row


def _need(row: dict[str, Any], key: str, path: Path, lineno: int) -> Any:
    if key not in row or row[key] in (None, ""):
        raise DataError(f"{path}:{lineno}: missing field {key!r}.")
    return row[key]


def _finish(items: list[QAItem], path: Path) -> list[QAItem]:
    seen: set[str] = set()
    for it in items:
        if it.id in seen:
            raise DataError(f"{path}: duplicate id {it.id!r}.")
        seen.add(it.id)
        if it.gold not in it.options:
            raise DataError(f"{path}: item {it.id!r} has gold {it.gold!r} not among its options.")
    if not items:
        raise DataError(f"{path}: no items.")
    return items


def read_medqa(path: Path) -> list[QAItem]:
    """MedQA-US JSONL: id, question, options {A..D}, answer_idx, meta_info."""
    items = []
    for lineno, row in _rows(path):
        opts = _need(row, "options", path, lineno)
        if not isinstance(opts, dict) or len(opts) < 2:
            raise DataError(f"{path}:{lineno}: 'options' must be an object of >= 2 options.")
        options = {str(k).strip().upper(): str(v) for k, v in sorted(opts.items())}
        items.append(
            QAItem(
                id=str(_need(row, "id", path, lineno)),
                question=str(_need(row, "question", path, lineno)),
                options=options,
                gold=str(_need(row, "answer_idx", path, lineno)).strip().upper(),
                meta={"meta_info": row.get("meta_info")},
            )
        )
    return _finish(items, path)


def read_medmcqa(path: Path) -> list[QAItem]:
    """MedMCQA JSONL: id, question, opa..opd, cop (1-based); answer_idx checked against cop."""
    items = []
    for lineno, row in _rows(path):
        options = {L: str(_need(row, f"op{L.lower()}", path, lineno)) for L in "ABCD"}
        cop = _need(row, "cop", path, lineno)
        if not isinstance(cop, int) or not 1 <= cop <= 4:
            raise DataError(f"{path}:{lineno}: 'cop' must be 1..4 (1-based), got {cop!r}.")
        gold = "ABCD"[cop - 1]
        if row.get("answer_idx") not in (None, gold):
            raise DataError(f"{path}:{lineno}: answer_idx {row['answer_idx']!r} != cop {cop}.")
        items.append(
            QAItem(
                id=str(_need(row, "id", path, lineno)),
                question=str(_need(row, "question", path, lineno)),
                options=options,
                gold=gold,
                meta={k: row.get(k) for k in ("choice_type", "subject_name", "topic_name")},
            )
        )
    return _finish(items, path)


def read_pubmedqa(path: Path) -> list[QAItem]:
    """PubMedQA PQA-L JSONL: pmid, question, contexts[], final_decision (yes/no/maybe)."""
    items = []
    for lineno, row in _rows(path):
        gold = str(_need(row, "final_decision", path, lineno)).strip().lower()
        if gold not in PUBMEDQA_LABELS:
            raise DataError(f"{path}:{lineno}: final_decision must be yes/no/maybe, got {gold!r}.")
        contexts = row.get("contexts") or []
        if not isinstance(contexts, list):
            raise DataError(f"{path}:{lineno}: 'contexts' must be a list of paragraphs.")
        items.append(
            QAItem(
                id=str(_need(row, "pmid", path, lineno)),
                question=str(_need(row, "question", path, lineno)),
                options={w: w for w in PUBMEDQA_LABELS},
                gold=gold,
                context="\n".join(str(c) for c in contexts),
                meta={"year": row.get("year")},
            )
        )
    return _finish(items, path)


TASKS: dict[str, TaskSpec] = {
    "medqa": TaskSpec("medqa", "medqa/medqa_us_4opt_test_shared.jsonl", None, read_medqa, "mcq-v1"),
    "medmcqa": TaskSpec(
        "medmcqa", "medmcqa/medmcqa_dev_shared_500.jsonl", None, read_medmcqa, "mcq-v1"
    ),
    "pubmedqa": TaskSpec(
        "pubmedqa",
        "pubmedqa/pubmedqa_pqal_test_shared_250.jsonl",
        "pubmedqa/pubmedqa_pqal_trainval_500.jsonl",
        read_pubmedqa,
        "pubmedqa-v1",
    ),
}


def get_task(name: str) -> TaskSpec:
    try:
        return TASKS[name]
    except KeyError:
        raise DataError(f"Unknown task {name!r}; choose one of {', '.join(TASKS)}.") from None


def resolve_data_file(task: TaskSpec, data: Path | None) -> Path:
    return Path(data).expanduser() if data else shared_data_dir() / task.default_file


def resolve_fewshot_file(task: TaskSpec, data_file: Path, fewshot: Path | None) -> Path:
    """The pool shots are drawn from: --fewshot-data, the task's dev file, or the data file."""
    if fewshot:
        return Path(fewshot).expanduser()
    if task.fewshot_file:
        return shared_data_dir() / task.fewshot_file
    return data_file

"""Training data: four input formats → one list of `Example`, a patient-level split, a manifest.

Formats:
- `pairs-csv`: one row per image–text pair (`--image-column`, `--text-column`); image paths
  are relative to the CSV's folder; a `license`/`license_normalized` column is recorded.
- `messages-jsonl`: `{"messages": [{"role": "user", "content": [{"type": "image", "image":
  "a.png"}, {"type": "text", "text": "..."}]}, {"role": "assistant", "content": "..."}]}`.
- `prompt-completion-jsonl`: `{"prompt": "...", "completion": "...", "image": "a.png"?}`.
- `text`: JSONL `{"text": "..."}`, a `.txt` file or a folder of `.txt` files; trained as
  language modelling (every token but BOS is a target).
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from medlens.errors import ConfigError

DataFormat = Literal["pairs-csv", "messages-jsonl", "prompt-completion-jsonl", "text"]
FORMATS: tuple[str, ...] = ("pairs-csv", "messages-jsonl", "prompt-completion-jsonl", "text")
DEFAULT_PROMPT = "Describe the findings in this chest X-ray."
_LICENCE_COLUMNS = ("license_normalized", "license", "licence")


@dataclass(frozen=True)
class Example:
    """One training item. `prompt` None: plain language modelling on `answer`."""

    answer: str
    prompt: str | None = None
    image: str | None = None  # absolute path
    group: str = ""  # patient (or other) id the split keeps together
    licence: str | None = None


@dataclass
class DataManifest:
    """What an adapter was trained on: files, hashes, licences, split."""

    data_file: str
    data_sha256: str
    format: str
    n_examples: int
    split_by: str | None
    train_groups: list[str] = field(default_factory=list)
    eval_groups: list[str] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)  # path -> sha256
    licences: dict[str, int] = field(default_factory=dict)  # licence -> count

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{n}: not valid JSON ({exc.msg}).") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{path}:{n}: each line must be a JSON object.")
        rows.append(row)
    return rows


def _image_path(base: Path, value: Any, where: str) -> str | None:
    if value in (None, ""):
        return None
    path = (base / str(value)).resolve()
    if not path.is_file():
        raise ConfigError(f"{where}: image {value!r} not found (paths are relative to {base}).")
    return str(path)


def _group(row: dict[str, Any], split_by: str | None, fallback: str) -> str:
    if split_by is None:
        return fallback
    if split_by not in row:
        raise ConfigError(f"--split-by column {split_by!r} not found; columns: {sorted(row)}.")
    return str(row[split_by])


def _licence(row: dict[str, Any]) -> str | None:
    for col in _LICENCE_COLUMNS:
        if row.get(col):
            return str(row[col])
    return None


def _pairs_csv(path: Path, image_col: str, text_col: str, prompt: str, split_by: str | None):
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for n, row in enumerate(rows, 2):
        for col in (image_col, text_col):
            if col not in row:
                raise ConfigError(f"{path}: column {col!r} not found; columns: {sorted(row)}.")
        text = (row[text_col] or "").strip()
        if not text:
            continue  # rows without a note teach nothing
        out.append(
            Example(
                answer=text,
                prompt=prompt,
                image=_image_path(path.parent, row[image_col], f"{path}:{n}"),
                group=_group(row, split_by, f"row{n}"),
                licence=_licence(row),
            )
        )
    return out


def _content(content: Any) -> tuple[str, list[Any]]:
    if isinstance(content, str):
        return content, []
    texts, images = [], []
    for part in content or []:
        if part.get("type") == "image":
            images.append(part.get("image") or part.get("path"))
        elif part.get("type") == "text":
            texts.append(part.get("text", ""))
    return "\n".join(texts), images


def _messages(path: Path, split_by: str | None) -> list[Example]:
    out = []
    for n, row in enumerate(_jsonl(path), 1):
        msgs = row.get("messages")
        roles = [m.get("role") for m in msgs or []]
        if not msgs or roles[-1] != "assistant" or "user" not in roles:
            raise ConfigError(f"{path}:{n}: `messages` must end with an assistant turn.")
        user_text, images = _content(msgs[roles.index("user")]["content"])
        answer, _ = _content(msgs[-1]["content"])
        images = images or ([row["image"]] if row.get("image") else [])
        if len(images) > 1:
            raise ConfigError(f"{path}:{n}: one image per example is supported.")
        out.append(
            Example(
                answer=answer.strip(),
                prompt=user_text.strip(),
                image=_image_path(path.parent, images[0] if images else None, f"{path}:{n}"),
                group=_group(row, split_by, f"line{n}"),
                licence=_licence(row),
            )
        )
    return out


def _prompt_completion(path: Path, split_by: str | None) -> list[Example]:
    out = []
    for n, row in enumerate(_jsonl(path), 1):
        if not isinstance(row.get("prompt"), str) or not isinstance(row.get("completion"), str):
            raise ConfigError(f"{path}:{n}: needs string fields `prompt` and `completion`.")
        out.append(
            Example(
                answer=row["completion"].strip(),
                prompt=row["prompt"].strip(),
                image=_image_path(path.parent, row.get("image"), f"{path}:{n}"),
                group=_group(row, split_by, f"line{n}"),
                licence=_licence(row),
            )
        )
    return out


def _text(path: Path, split_by: str | None) -> list[Example]:
    if path.is_dir():
        files = sorted(path.glob("*.txt"))
        return [Example(answer=f.read_text("utf-8").strip(), group=f.name) for f in files]
    if path.suffix == ".txt":
        return [Example(answer=path.read_text("utf-8").strip(), group=path.name)]
    out = []
    for n, row in enumerate(_jsonl(path), 1):
        if not isinstance(row.get("text"), str):
            raise ConfigError(f"{path}:{n}: needs a string field `text`.")
        out.append(
            Example(
                answer=row["text"].strip(),
                group=_group(row, split_by, f"line{n}"),
                licence=_licence(row),
            )
        )
    return out


def load_examples(
    path: Path,
    fmt: str,
    *,
    image_column: str = "image_file",
    text_column: str = "clinical_notes",
    prompt: str = DEFAULT_PROMPT,
    split_by: str | None = None,
) -> list[Example]:
    """Read `path` in format `fmt`; bad input raises ConfigError naming file and line."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ConfigError(f"Training data {path} not found.")
    if fmt == "pairs-csv":
        out = _pairs_csv(path, image_column, text_column, prompt, split_by)
    elif fmt == "messages-jsonl":
        out = _messages(path, split_by)
    elif fmt == "prompt-completion-jsonl":
        out = _prompt_completion(path, split_by)
    elif fmt == "text":
        out = _text(path, split_by)
    else:
        raise ConfigError(f"Unknown data format {fmt!r}; use one of {', '.join(FORMATS)}.")
    out = [ex for ex in out if ex.answer]
    if not out:
        raise ConfigError(f"{path}: no usable training examples.")
    return out


def split_groups(
    examples: list[Example], eval_fraction: float, seed: int = 0
) -> tuple[list[Example], list[Example]]:
    """Hold out whole groups (patients): notes repeated across one patient's images never
    sit on both sides. Group order comes from a seeded hash, so the split is reproducible."""
    groups = sorted({ex.group for ex in examples})
    n_eval = round(len(groups) * eval_fraction) if eval_fraction > 0 else 0
    if n_eval >= len(groups):
        raise ConfigError("The evaluation split would take every group; lower --eval-fraction.")
    order = sorted(groups, key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest())
    held = set(order[:n_eval])
    return [e for e in examples if e.group not in held], [e for e in examples if e.group in held]


def build_manifest(
    path: Path, fmt: str, split_by: str | None, train: list[Example], held: list[Example]
) -> DataManifest:
    path = Path(path).expanduser().resolve()
    data_hash = sha256_file(path) if path.is_file() else _folder_hash(path)
    licences: dict[str, int] = {}
    for ex in train:
        key = ex.licence or "unknown (not stated in the data)"
        licences[key] = licences.get(key, 0) + 1
    images = {ex.image: sha256_file(Path(ex.image)) for ex in train + held if ex.image}
    return DataManifest(
        data_file=str(path),
        data_sha256=data_hash,
        format=fmt,
        n_examples=len(train),
        split_by=split_by,
        train_groups=sorted({e.group for e in train}),
        eval_groups=sorted({e.group for e in held}),
        images=images,
        licences=licences,
    )


def _folder_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.glob("*.txt")):
        h.update(f.name.encode() + b"\0" + sha256_file(f).encode())
    return h.hexdigest()

"""`medlens finetune medsiglip`: probes, a classifier head, or contrastive fine-tuning.

Data: a CSV with an image column (paths relative to the CSV) and a label column whose
values are class names (`--label-column`, e.g. `finding`); multi-label rows separate
names with `;`. Images go through the encoder record's preprocessing (zero-pad to square,
resize) and its processor, as at inference.

- probe: logistic regression per label on cached, L2-normalised embeddings
  (`evaluation.probe_train`), saved as probe files that `tasks.classify.probes` loads.
- classifier: `SiglipForImageClassification` on the vision tower, multi-label BCE with
  per-class `pos_weight` (negatives / positives).
- contrastive: `SiglipModel(..., return_loss=True)` on image–caption batches; identical
  captions in one batch are de-duplicated, since SigLIP's loss would treat the copy as a
  negative. The result is an encoder checkpoint with a registry entry.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medlens.errors import ConfigError

Mode = Literal["probe", "classifier", "contrastive"]


@dataclass(frozen=True)
class SiglipData:
    images: list[str]
    labels: list[list[str]]  # class names per image
    classes: list[str]
    groups: list[str]

    def matrix(self) -> np.ndarray:
        y = np.zeros((len(self.images), len(self.classes)), np.float32)
        for i, names in enumerate(self.labels):
            for name in names:
                y[i, self.classes.index(name)] = 1.0
        return y

    def captions(self, template: str) -> list[str]:
        return [template.format(label=" and ".join(names)) for names in self.labels]


@dataclass
class SiglipResult:
    mode: str
    output: Path
    loss_before: float
    loss_after: float
    entry: dict[str, Any]


def load_siglip_data(
    path: Path, image_column: str, label_column: str, split_by: str | None = None
) -> SiglipData:
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"Training data {path} not found.")
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    images, labels, groups = [], [], []
    for n, row in enumerate(rows, 2):
        for col in (image_column, label_column, *([split_by] if split_by else [])):
            if col not in row:
                raise ConfigError(f"{path}: column {col!r} not found; columns: {sorted(row)}.")
        names = [x.strip() for x in (row[label_column] or "").split(";") if x.strip()]
        if not names:
            continue
        image = (path.parent / row[image_column]).resolve()
        if not image.is_file():
            raise ConfigError(f"{path}:{n}: image {row[image_column]!r} not found.")
        images.append(str(image))
        labels.append(names)
        groups.append(row[split_by] if split_by else f"row{n}")
    classes = sorted({x for names in labels for x in names})
    if len(classes) < 2:
        raise ConfigError(f"{path}: need at least two classes in {label_column!r}.")
    return SiglipData(images, labels, classes, groups)


def _encoder(base: str, settings: Any) -> tuple[Any, Any, Path]:
    from medlens.models.loader import local_weights
    from medlens.models.registry import load_registry

    record = load_registry(settings).resolve(base, kind="encoder")
    return record, record.preprocess, local_weights(record, settings)


def _pixels(processor: Any, spec: Any, paths: list[str]) -> Any:
    import torch

    from medlens.imaging.ingest import ingest
    from medlens.imaging.preprocess import preprocess

    images = []
    for p in paths:
        image = ingest(p).image
        images.append((preprocess(image, spec) if spec else image).convert("RGB"))
    return torch.as_tensor(
        processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
    )


def finetune_medsiglip(
    mode: Mode,
    base: str,
    data: SiglipData,
    output: Path,
    settings: Any,
    *,
    steps: int = 40,
    lr: float | None = None,
    batch: int = 8,
    seed: int = 0,
    caption_template: str = "{label}",
    entry_id: str | None = None,
) -> SiglipResult:
    import torch

    torch.manual_seed(seed)
    output = Path(output).expanduser()
    output.mkdir(parents=True, exist_ok=True)
    record, spec, path = _encoder(base, settings)
    entry_id = entry_id or f"{mode}/{output.name}"
    if mode == "probe":
        from medlens.training.siglip_probe import train_probes

        return train_probes(record, data, output, settings, seed=seed, entry_id=entry_id)
    from medlens.training.siglip_heads import train_classifier, train_contrastive

    if mode == "classifier":
        return train_classifier(
            record,
            spec,
            path,
            data,
            output,
            steps=steps,
            lr=lr or 5e-4,
            batch=batch,
            entry_id=entry_id,
        )
    if mode == "contrastive":
        return train_contrastive(
            record,
            spec,
            path,
            data,
            output,
            steps=steps,
            lr=lr or 1e-4,
            batch=batch,
            captions=data.captions(caption_template),
            entry_id=entry_id,
        )
    raise ConfigError(f"--mode must be probe, classifier or contrastive, not {mode!r}.")


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=str), "utf-8")

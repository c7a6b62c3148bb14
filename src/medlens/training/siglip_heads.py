"""MedSigLIP classifier head (multi-label BCE, pos_weight) and contrastive fine-tuning.

Plain torch loops: a few hundred lines of Trainer set-up buy nothing for one loss. Both
measure the loss on fixed batches before and after training with the saved artefact
reloaded from disk, so the reported change is the change of what gets served.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from medlens.errors import ConfigError
from medlens.training.medsiglip import SiglipData, SiglipResult, _pixels, write_json
from medlens.training.sft import peak_memory


def _batches(n: int, batch: int, steps: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    out: list[list[int]] = []
    while len(out) < steps:
        order = rng.permutation(n).tolist()
        out += [order[i : i + batch] for i in range(0, n, batch)]
    return out[:steps]


def pos_weight(y: np.ndarray) -> np.ndarray:
    """negatives / positives per class (1 where a class has no positives)."""
    pos = y.sum(axis=0)
    return np.where(pos > 0, (len(y) - pos) / np.maximum(pos, 1), 1.0).astype(np.float32)


def _bce(model: Any, pixels: Any, y: Any, pw: Any) -> Any:
    import torch

    logits = model(pixel_values=pixels).logits
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, y, pos_weight=pw)


def train_classifier(
    record: Any,
    spec: Any,
    path: Path,
    data: SiglipData,
    output: Path,
    *,
    steps: int,
    lr: float,
    batch: int,
    entry_id: str,
) -> SiglipResult:
    import torch
    from transformers import AutoProcessor, SiglipForImageClassification

    classes = data.classes
    kwargs = {
        "num_labels": len(classes),
        "problem_type": "multi_label_classification",
        "id2label": dict(enumerate(classes)),
        "label2id": {c: i for i, c in enumerate(classes)},
    }
    model = SiglipForImageClassification.from_pretrained(path, **kwargs)
    processor = AutoProcessor.from_pretrained(path)
    pixels = _pixels(processor, spec, data.images)
    y = torch.as_tensor(data.matrix())
    pw = torch.as_tensor(pos_weight(data.matrix()))
    with torch.no_grad():
        before = float(_bce(model.eval(), pixels, y, pw))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    model.train()
    start, log = time.perf_counter(), []
    for step, idx in enumerate(_batches(len(y), batch, steps), 1):
        loss = _bce(model, pixels[idx], y[idx], pw)
        opt.zero_grad()
        loss.backward()
        opt.step()
        log.append({"step": step, "loss": float(loss.detach())})
    seconds = time.perf_counter() - start
    model.save_pretrained(output / "classifier")
    processor.save_pretrained(output / "classifier")
    reloaded = SiglipForImageClassification.from_pretrained(output / "classifier").eval()
    with torch.no_grad():
        after = float(_bce(reloaded, pixels, y, pw))
    entry = _entry(entry_id, "classifier", record, output / "classifier", classes)
    entry["pos_weight"] = pos_weight(data.matrix()).tolist()
    _log(output, "classifier", before, after, seconds, log, entry)
    return SiglipResult("classifier", output, before, after, entry)


def _dedupe(idx: list[int], captions: list[str]) -> list[int]:
    # SigLIP's loss makes every other caption in the batch a negative: a second copy of
    # the same caption would push an image away from its own text.
    seen: set[str] = set()
    out = []
    for i in idx:
        if captions[i] not in seen:
            seen.add(captions[i])
            out.append(i)
    return out


def _contrastive_loss(model: Any, pixels: Any, tok: Any, batches: list[list[int]]) -> float:
    import torch

    total = 0.0
    with torch.no_grad():
        for idx in batches:
            out = model(pixel_values=pixels[idx], input_ids=tok[idx], return_loss=True)
            total += float(out.loss)
    return total / len(batches)


def train_contrastive(
    record: Any,
    spec: Any,
    path: Path,
    data: SiglipData,
    output: Path,
    *,
    steps: int,
    lr: float,
    batch: int,
    captions: list[str],
    entry_id: str,
) -> SiglipResult:
    import torch
    from transformers import AutoProcessor, SiglipModel

    model = SiglipModel.from_pretrained(path)
    processor = AutoProcessor.from_pretrained(path)
    pixels = _pixels(processor, spec, data.images)
    max_len = int(model.config.text_config.max_position_embeddings)
    tok = processor.tokenizer(
        captions,
        padding="max_length",
        truncation=True,
        max_length=min(64, max_len),
        return_tensors="pt",
    )["input_ids"]
    plan = [_dedupe(b, captions) for b in _batches(len(captions), batch, steps)]
    plan = [b for b in plan if len(b) > 1]
    if not plan:
        raise ConfigError("Contrastive training needs at least two different captions.")
    fixed = [
        _dedupe(list(range(i, min(i + batch, len(captions)))), captions)
        for i in range(0, len(captions), batch)
    ]
    fixed = [b for b in fixed if len(b) > 1] or plan[:1]
    before = _contrastive_loss(model.eval(), pixels, tok, fixed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    model.train()
    start, log = time.perf_counter(), []
    for step, idx in enumerate(plan, 1):
        loss = model(pixel_values=pixels[idx], input_ids=tok[idx], return_loss=True).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        log.append({"step": step, "loss": float(loss.detach()), "batch": len(idx)})
    seconds = time.perf_counter() - start
    model.save_pretrained(output / "encoder")
    processor.save_pretrained(output / "encoder")
    marker = path / "medlens_test_model.json"
    if marker.is_file():  # fine-tuned test weights stay labelled as a test model
        (output / "encoder" / marker.name).write_text(marker.read_text("utf-8"), "utf-8")
    after = _contrastive_loss(
        SiglipModel.from_pretrained(output / "encoder").eval(), pixels, tok, fixed
    )
    entry = _entry(entry_id, "encoder", record, output / "encoder", data.classes)
    _log(output, "contrastive", before, after, seconds, log, entry)
    return SiglipResult("contrastive", output, before, after, entry)


def _entry(entry_id: str, kind: str, record: Any, folder: Path, classes: list[str]) -> dict:
    from dataclasses import asdict

    entry: dict[str, Any] = {
        "id": entry_id,
        "kind": kind,  # "encoder": a registry record; "classifier": a head file
        "source": f"path:{folder.resolve()}",
        "revision": "local",
        "modalities": list(record.modalities),
        "prompt_format": record.prompt_format,
        "dtype": "float32",
        "context_length": record.context_length,
        "is_test": record.is_test,
        "description": f"MedSigLIP {kind} fine-tuned from {record.id}.",
        "options": {
            "finetuned_from": {
                "base": record.id,
                "base_revision": record.revision,
                "labels": classes,
            }
        },
    }
    if record.preprocess is not None:
        pre = asdict(record.preprocess)
        entry["preprocess"] = {**pre, "mean": list(pre["mean"]), "std": list(pre["std"])}
    return entry


def _log(
    output: Path,
    mode: str,
    before: float,
    after: float,
    seconds: float,
    log: list[dict],
    entry: dict,
) -> None:
    write_json(
        output / "training_log.json",
        {
            "mode": mode,
            "loss_before": before,
            "loss_after": after,
            "seconds": round(seconds, 2),
            "memory": peak_memory(),
            "log_history": log,
        },
    )
    write_json(output / "registry_entry.json", entry)

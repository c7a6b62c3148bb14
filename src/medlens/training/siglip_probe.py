"""MedSigLIP probe mode: one logistic regression per class on cached embeddings.

Embeddings come from the encoder as served (model session, record preprocessing,
L2-normalised) and are cached in `<output>/embeddings.npz` keyed by image sha256 and the
encoder's weights hash. Training is `evaluation.probe_train.train_probe` (cross-validated
by group, calibrated, thresholded); the files are what `tasks.classify.probes` loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medlens.errors import ConfigError
from medlens.training.data import sha256_file
from medlens.training.medsiglip import SiglipData, SiglipResult, write_json


def cached_embeddings(encoder: Any, record: Any, paths: list[str], cache: Path) -> np.ndarray:
    from medlens.imaging.ingest import ingest
    from medlens.imaging.preprocess import preprocess
    from medlens.models.protocols import ImagePart

    tag = getattr(getattr(encoder, "info", None), "weights_hash", "") or record.id
    keys = [f"{tag}:{sha256_file(Path(p))}" for p in paths]
    have: dict[str, np.ndarray] = {}
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            have = dict(zip(z["keys"].tolist(), z["emb"], strict=True))
    todo = [(k, p) for k, p in zip(keys, paths, strict=True) if k not in have]
    if todo:
        parts = []
        for key, p in todo:
            image = ingest(p).image
            if record.preprocess is not None:
                image = preprocess(image, record.preprocess)
            parts.append(ImagePart(image, key=key))
        for (key, _), row in zip(todo, encoder.embed_images(parts), strict=True):
            have[key] = np.asarray(row, np.float32)
        np.savez(cache, keys=np.array(list(have)), emb=np.stack(list(have.values())))
    X = np.stack([have[k] for k in keys]).astype(np.float64)
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def train_probes(
    record: Any, data: SiglipData, output: Path, settings: Any, *, seed: int, entry_id: str
) -> SiglipResult:
    from medlens.evaluation.probe_train import train_probe
    from medlens.models.session import default_session
    from medlens.tasks.classify.probes import load_probe, save_probe
    from medlens.tasks.encoding import encoder_id

    encoder = default_session().encoder(record, settings)
    X = cached_embeddings(encoder, record, data.images, output / "embeddings.npz")
    Y = data.matrix()
    before, after, files = [], [], []
    for j, label in enumerate(data.classes):
        y = Y[:, j].astype(int)
        n_min = int(min(y.sum(), len(y) - y.sum()))
        if n_min < 2:
            raise ConfigError(f"Class {label!r} needs ≥ 2 positive and ≥ 2 negative images.")
        probe = train_probe(
            X,
            y,
            name=f"{entry_id.replace('/', '-')}-{label}",
            label=label,
            encoder_id=encoder_id(encoder),
            folds=min(5, n_min),
            seed=seed,
            n_boot=200,
            groups=list(data.groups),
            training={"data": "medlens finetune medsiglip --mode probe"},
        )
        path = save_probe(probe, output / "probes")
        reloaded = load_probe(path)  # judge the saved file
        before.append(log_loss(y, np.full(len(y), y.mean())))
        after.append(log_loss(y, reloaded.predict_proba(X)))
        files.append(str(path))
    entry = {
        "id": entry_id,
        "kind": "probes",
        "encoder": record.id,
        "labels": data.classes,
        "probe_files": files,
    }
    write_json(output / "registry_entry.json", entry)
    write_json(
        output / "training_log.json", {"mode": "probe", "loss_before": before, "loss_after": after}
    )
    return SiglipResult("probe", output, float(np.mean(before)), float(np.mean(after)), entry)

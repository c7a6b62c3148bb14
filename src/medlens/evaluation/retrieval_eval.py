"""AUC per label of zero-shot scores and of probes against a labelled CSV / folder.

Ground truth comes from `cases_csv` (NIH labels.csv, COVID metadata.csv, generic CSV). A
label-set label is matched to CSV columns by its name or its `aliases`; several aliases
are OR-ed (CheXpert "Lung Lesion" = NIH Mass or Nodule). Labels with no positive or no
negative case get no AUC (reported as such, never as 0.5). Metrics come from
medlens.evaluation.stats (rank AUC, percentile bootstrap); CLI/evaluation use only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from medlens.errors import MedLensError
from medlens.tasks.encoding import image_parts
from medlens.tasks.retrieval.cases_csv import CaseInput

if TYPE_CHECKING:
    from medlens.models.protocols import Encoder
    from medlens.models.registry import ModelRecord
    from medlens.tasks.classify.probes import Probe
    from medlens.tasks.classify.zero_shot import Label, LabelSet


def embed_cases(
    encoder: Encoder, record: ModelRecord, cases: Sequence[CaseInput], batch: int = 16
) -> tuple[np.ndarray, list[CaseInput], list[tuple[str, str]]]:
    """(embeddings, cases that embedded, failures) - unreadable images are listed, not fatal."""
    from medlens.imaging.ingest import ingest

    kept: list[CaseInput] = []
    failed: list[tuple[str, str]] = []
    out: list[np.ndarray] = []
    for start in range(0, len(cases), batch):
        imgs = []
        for case in cases[start : start + batch]:
            try:
                imgs.append(ingest(case.path))
                kept.append(case)
            except MedLensError as exc:
                failed.append((case.case_id, str(exc)))
        if imgs:
            out.append(
                np.asarray(encoder.embed_images(image_parts(imgs, record.preprocess)), np.float32)
            )
    emb = np.concatenate(out) if out else np.empty((0, encoder.dim), np.float32)
    return emb, kept, failed


def truth_for(labels: dict[str, Any], label: Label) -> int | None:
    """0/1 ground truth of a label-set label from a case's CSV labels (None: unknown)."""
    values = [labels.get(col) for col in (label.name, *label.aliases) if col in labels]
    values = [int(v) for v in values if v in (0, 1, True, False)]
    if not values:
        return None
    return int(any(values))


def auc_entry(y: np.ndarray, s: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    from medlens.evaluation import stats

    n_pos = int((y == 1).sum())
    entry: dict[str, Any] = {"n": int(y.size), "n_positive": n_pos, "auc": None, "auc_ci95": None}
    if n_pos == 0 or n_pos == y.size:
        entry["note"] = "one class only: AUC undefined"
        return entry
    boot = stats.bootstrap_auc(y, s, n_boot=n_boot, seed=seed)
    entry["auc"] = float(boot.estimate)
    entry["auc_ci95"] = [boot.ci.low, boot.ci.high]
    return entry


def evaluate_zero_shot(
    encoder: Encoder,
    record: ModelRecord,
    cases: Sequence[CaseInput],
    label_set: LabelSet,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    from medlens.tasks.classify.zero_shot import zero_shot_embeddings

    emb, kept, failed = embed_cases(encoder, record, cases)
    probs = zero_shot_embeddings(encoder, emb, label_set) if len(kept) else []
    per_label: dict[str, Any] = {}
    for lab in label_set.labels:
        pairs = [(truth_for(c.labels, lab), p[lab.name]) for c, p in zip(kept, probs, strict=True)]
        pairs = [(t, s) for t, s in pairs if t is not None]
        if not pairs:
            per_label[lab.name] = {"n": 0, "auc": None, "note": "no ground truth in this data"}
            continue
        y = np.asarray([t for t, _ in pairs], np.int64)
        s = np.asarray([s for _, s in pairs], np.float64)
        per_label[lab.name] = auc_entry(y, s, n_boot, seed)
    aucs = [v["auc"] for v in per_label.values() if v.get("auc") is not None]
    return {
        "label_set": label_set.name,
        "label_set_version": label_set.version,
        "n_images": len(kept),
        "failed": failed,
        "per_label": per_label,
        "macro_auc": float(np.mean(aucs)) if aucs else None,
        "labels_with_auc": len(aucs),
    }


def evaluate_probe(
    probe: Probe,
    encoder: Encoder,
    record: ModelRecord,
    cases: Sequence[CaseInput],
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    from medlens.evaluation import stats

    emb, kept, failed = embed_cases(encoder, record, cases)
    keep = [i for i, c in enumerate(kept) if c.labels.get(probe.label) in (0, 1)]
    y = np.asarray([int(kept[i].labels[probe.label]) for i in keep], np.int64)
    result: dict[str, Any] = {"probe": probe.provenance(), "n_images": len(kept), "failed": failed}
    if not keep:
        result["auc"] = None
        result["note"] = f"no case has a 0/1 {probe.label!r} label"
        return result
    p = probe.predict_proba(emb[keep])
    result.update(auc_entry(y, p, n_boot, seed))
    counts = stats.threshold_counts(y, p, probe.threshold)
    spec_den = counts.tn + counts.fp
    result["sensitivity_at_threshold"] = counts.recall()
    result["specificity_at_threshold"] = counts.tn / spec_den if spec_den else math.nan
    return result

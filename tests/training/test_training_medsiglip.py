"""`medlens finetune medsiglip`: probe, classifier and contrastive modes on the tiny encoder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from medlens.training.medsiglip import finetune_medsiglip, load_siglip_data
from medlens.training.siglip_heads import _dedupe, pos_weight

BASE = "medlens/test-medsiglip"


@pytest.fixture(scope="module")
def siglip_csv(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 images: 6 COVID-19 and 6 'No Finding' / other, one row per image."""
    root = shared_data / "cxr" / "covid_chestxray"
    with (root / "metadata.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    covid = [r for r in rows if r["finding"] == "COVID-19"][:6]
    other = [r for r in rows if r["finding"] in ("No Finding", "Streptococcus")][:6]
    path = tmp_path_factory.mktemp("siglip") / "labels.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, ["image_file", "finding", "patientid"])
        w.writeheader()
        for r in covid + other:
            w.writerow(
                {
                    "image_file": str(root / r["image_file"]),
                    "finding": "covid" if r in covid else "other",
                    "patientid": r["patientid"],
                }
            )
    return path


@pytest.fixture(scope="module")
def data(siglip_csv: Path):  # type: ignore[no-untyped-def]
    return load_siglip_data(siglip_csv, "image_file", "finding", "patientid")


def test_probe_lowers_the_loss_and_the_probe_file_loads(data, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from medlens.tasks.classify.probes import load_probe

    res = finetune_medsiglip("probe", BASE, data, tmp_path, settings)
    assert res.loss_after < res.loss_before
    probes = [load_probe(p) for p in res.entry["probe_files"]]
    assert [p.label for p in probes] == ["covid", "other"]
    assert probes[0].encoder_id.startswith(BASE)
    # Embeddings are cached: a second run reads them instead of re-encoding.
    with np.load(tmp_path / "embeddings.npz") as z:
        assert len(z["keys"]) == 12


def test_classifier_lowers_bce_and_reloads(data, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from transformers import SiglipForImageClassification

    res = finetune_medsiglip("classifier", BASE, data, tmp_path, settings, steps=20, batch=6)
    assert res.loss_after < 0.8 * res.loss_before, (res.loss_before, res.loss_after)
    model = SiglipForImageClassification.from_pretrained(tmp_path / "classifier")
    assert model.config.problem_type == "multi_label_classification"
    assert model.config.id2label == {0: "covid", 1: "other"}
    entry = json.loads((tmp_path / "registry_entry.json").read_text())
    assert entry["pos_weight"] == [1.0, 1.0]


def test_pos_weight_is_negatives_over_positives() -> None:
    y = np.array([[1, 0], [0, 0], [0, 1], [0, 0]], np.float32)
    assert pos_weight(y).tolist() == [3.0, 3.0]
    assert pos_weight(np.zeros((3, 1), np.float32)).tolist() == [1.0]


def test_identical_captions_are_deduplicated_within_a_batch() -> None:
    captions = ["covid", "covid", "other", "covid", "other"]
    assert _dedupe([0, 1, 2, 3, 4], captions) == [0, 2]


def test_contrastive_lowers_the_sigmoid_loss_and_serves_as_an_encoder(  # type: ignore[no-untyped-def]
    data, settings, tmp_path
) -> None:
    from medlens.config import load_settings
    from medlens.models.session import ModelSession

    res = finetune_medsiglip(
        "contrastive",
        BASE,
        data,
        tmp_path,
        settings,
        steps=20,
        batch=6,
        lr=1e-3,
        caption_template="a chest x-ray: {label}",
    )
    assert res.loss_after < res.loss_before
    entry = res.entry
    assert entry["kind"] == "encoder" and entry["is_test"] is True
    # The entry is a registry record the zero-shot path loads like any encoder.
    served = load_settings(models=[{**entry, "id": "test/contrastive"}])
    enc = ModelSession().encoder("test/contrastive", served)
    assert enc.info.is_test and enc.embed_texts(["a chest x-ray: covid"]).shape[0] == 1

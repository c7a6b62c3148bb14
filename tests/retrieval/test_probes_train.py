"""Probe training: honest cross-validated AUC, calibration, thresholds, versioned files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medlens.errors import ConfigError
from medlens.evaluation.probe_train import ThresholdRule, pick_threshold, train_probe
from medlens.tasks.classify.probes import load_probe, save_probe


def _data(n: int = 400, dim: int = 64, sep: float = 2.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.35).astype(int)
    x = rng.standard_normal((n, dim))
    direction = rng.standard_normal(dim)
    direction /= np.linalg.norm(direction)
    x += sep * np.outer(2 * y - 1, direction)
    return x, y


def test_separable_embeddings_reach_high_auc() -> None:
    x, y = _data()
    probe = train_probe(x, y, name="urgent", label="urgent", encoder_id="enc@1", n_boot=200)
    m = probe.metrics
    assert m["auc"] > 0.95
    assert m["auc_ci95"][0] <= m["auc"] <= m["auc_ci95"][1]
    assert m["n"] == 400 and m["n_positive"] == int(y.sum())
    p = probe.predict_proba(x)
    assert p.shape == (400,) and np.all((p >= 0) & (p <= 1))
    assert np.mean((p >= probe.threshold) == (y == 1)) > 0.9


def test_shuffled_labels_give_chance_auc() -> None:
    x, y = _data()
    y_shuffled = np.random.default_rng(5).permutation(y)
    probe = train_probe(x, y_shuffled, name="s", label="urgent", encoder_id="e", n_boot=200)
    assert abs(probe.metrics["auc"] - 0.5) < 0.08, probe.metrics["auc"]
    lo, hi = probe.metrics["auc_ci95"]
    assert lo < 0.5 < hi + 0.05  # the interval does not claim skill


def test_sensitivity_threshold_rule() -> None:
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.35, 0.6, 0.3, 0.5, 0.7, 0.9])
    # highest threshold with sensitivity >= 0.75 is 0.5 (catches 0.5, 0.7, 0.9)
    assert pick_threshold(y, p, ThresholdRule.parse("sensitivity:0.75")) == 0.5
    # Youden: at 0.5 -> tpr .75, fpr .25 (J .5); at 0.7 -> .5, 0 (J .5); at 0.3 -> 1, .5 (.5)
    assert pick_threshold(y, p, ThresholdRule.parse("youden")) in (0.3, 0.5, 0.7)
    with pytest.raises(ConfigError):
        ThresholdRule.parse("sensitivity:2")


def test_probe_file_roundtrip_and_integrity(tmp_path) -> None:
    x, y = _data(n=120)
    probe = train_probe(x, y, name="urgent", label="urgent", encoder_id="enc@1", n_boot=50,
                        training={"library": "default"})
    path = save_probe(probe, tmp_path / "probes")
    assert path.name == f"urgent-{probe.version}.json"
    loaded = load_probe(path)
    np.testing.assert_allclose(loaded.predict_proba(x), probe.predict_proba(x))
    assert loaded.threshold == probe.threshold and loaded.label == "urgent"
    assert loaded.provenance()["sha256"] == loaded.sha256 and len(loaded.sha256) == 64
    assert loaded.training["library"] == "default"
    body = json.loads(path.read_text())
    body["threshold"] = 0.01  # tampering is detected
    path.write_text(json.dumps(body))
    with pytest.raises(ConfigError, match="sha256"):
        load_probe(path)
    with pytest.raises(ConfigError, match="expects 64-d"):
        probe.predict_proba(np.zeros((1, 3)))


def test_too_few_positives_is_a_clear_error() -> None:
    x = np.random.default_rng(0).standard_normal((20, 8))
    y = np.zeros(20, int)
    y[0] = 1
    with pytest.raises(ConfigError, match="1 positive"):
        train_probe(x, y, name="u", label="urgent", encoder_id="e")


def test_patient_grouping_removes_leakage() -> None:
    # 60 patients x 4 near-identical images, labels random per patient: there is nothing
    # to learn, but a per-image split lets the model recognise the patient.
    rng = np.random.default_rng(3)
    patients = rng.standard_normal((60, 32))
    y_pat = rng.integers(0, 2, 60)
    x = np.repeat(patients, 4, axis=0) + 0.05 * rng.standard_normal((240, 32))
    y = np.repeat(y_pat, 4)
    groups = [f"p{i}" for i in np.repeat(np.arange(60), 4)]
    leaky = train_probe(x, y, name="u", label="u", encoder_id="e", n_boot=50, C=100.0)
    honest = train_probe(x, y, name="u", label="u", encoder_id="e", n_boot=50, C=100.0,
                         groups=groups)
    assert leaky.metrics["auc"] > 0.8  # the leak the grouping exists to prevent
    assert abs(honest.metrics["auc"] - 0.5) < 0.15, honest.metrics["auc"]
    assert "grouped by patient" in honest.metrics["cv"] and honest.metrics["n_groups"] == 60


def test_too_few_patients_says_counts_and_what_to_add() -> None:
    from medlens.evaluation.probe_train import TooFewPatients

    x, _ = _data(n=20)
    y = np.array([1, 1, 1] + [0] * 17)
    # All positives one patient; negatives from 5 patients.
    groups = ["a", "a", "a"] + [f"n{i % 5}" for i in range(17)]
    with pytest.raises(TooFewPatients) as err:
        train_probe(x, y, name="u", label="urgent", encoder_id="e", groups=groups)
    assert err.value.need == "urgent=1 cases from 1 more patient(s)"
    assert "3 positive case(s) from 1 patient(s) and 17 negative from 5" in str(err.value)
    # Negatives short instead: named the other way round.
    with pytest.raises(TooFewPatients, match="urgent=0 cases from 1 more patient"):
        train_probe(x, 1 - y, name="u", label="urgent", encoder_id="e", groups=groups)
    # Both sides with 2+ patients: trains.
    groups[2] = "b"
    probe = train_probe(x, y, name="u", label="urgent", encoder_id="e", groups=groups, n_boot=20)
    assert probe.metrics["n_groups"] == 7

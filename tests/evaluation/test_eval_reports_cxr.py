"""Report clinical F1 via the rule-based labeler; CXR classification report on the shared CSVs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medlens.evaluation import stats
from medlens.evaluation.cxr import classification_report
from medlens.evaluation.cxr_io import join, read_labels, read_scores
from medlens.evaluation.report_metrics import (
    chexpert_counts,
    model_metrics_status,
    positive_labels,
    report_metrics,
)
from medlens.tasks.interpret.labeler import CHEXPERT_LABELS

REFS = [
    "Moderate cardiomegaly. Small left pleural effusion.",
    "No acute cardiopulmonary process.",
    "Right lower lobe consolidation, may represent pneumonia.",
]
GENS = [
    "Cardiomegaly. No pleural effusion.",
    "Possible pneumonia in the right lower lobe.",
    "Right lower lobe consolidation. Endotracheal tube in place.",
]


def test_eval_report_labels_used():
    # The labeler's verdicts the hand counts below rely on.
    L = CHEXPERT_LABELS
    assert positive_labels(REFS[0], L) == {"Cardiomegaly", "Pleural Effusion"}
    assert positive_labels(REFS[1], L) == {"No Finding"}
    assert positive_labels(REFS[2], L) == {"Consolidation"}
    assert positive_labels(REFS[2], L, "positive") == {"Consolidation", "Pneumonia"}
    assert positive_labels(GENS[0], L) == {"Cardiomegaly"}
    assert positive_labels(GENS[1], L) == set()
    assert positive_labels(GENS[1], L, "positive") == {"Pneumonia"}
    assert positive_labels(GENS[2], L) == {"Consolidation", "Support Devices"}


def test_eval_report_f1_hand_computed():
    c = chexpert_counts(GENS, REFS)
    assert (c["Cardiomegaly"].tp, c["Cardiomegaly"].fp, c["Cardiomegaly"].fn) == (1, 0, 0)
    assert (c["Pleural Effusion"].tp, c["Pleural Effusion"].fn) == (0, 1)
    assert (c["No Finding"].tp, c["No Finding"].fn) == (0, 1)
    assert (c["Consolidation"].tp, c["Support Devices"].fp) == (1, 1)
    m = report_metrics(GENS, REFS)
    # defined labels: Cardiomegaly 1, Consolidation 1, Pleural Effusion 0, No Finding 0,
    # Support Devices 0 -> macro 2/5 ; the other 9 labels are 0/0 and left out
    assert m.macro_f1 == pytest.approx(2 / 5)
    assert len(m.undefined_labels) == 9 and "Edema" in m.undefined_labels
    # top-5 defined: Cardiomegaly 1, Consolidation 1, Pleural Effusion 0 -> 2/3
    assert m.macro_f1_top5 == pytest.approx(2 / 3)
    # micro: tp 2, fp 1, fn 2 -> 4 / (4 + 3)
    assert m.micro_f1 == pytest.approx(4 / 7)
    # uncertain counted positive: gen2 Pneumonia (fn->tp for ref3? no: different pairs)
    mu = report_metrics(GENS, REFS, uncertain="positive")
    assert mu.per_label["Pneumonia"]["fp"] == 1 and mu.per_label["Pneumonia"]["fn"] == 1
    assert 0 < m.bleu4 <= 1 or m.bleu4 == 0.0
    assert 0 < m.rouge_l < 1


def test_eval_report_identical_reports_score_one():
    m = report_metrics(REFS, REFS)
    assert m.macro_f1 == 1.0 and m.micro_f1 == 1.0 and m.rouge_l == 1.0
    assert m.bleu4 == pytest.approx(1.0)
    status = model_metrics_status()
    assert "skipped" in status["chexbert"] and "skipped" in status["radgraph"]


def test_eval_classification_report_hand_and_sklearn():
    y = {"a": [1, 0, 1, 0, 0, 1], "b": [0, 0, 0, 0, 0, 0]}
    s = {"a": [0.9, 0.4, 0.6, 0.7, 0.1, 0.3], "b": [0.1, 0.2, 0.6, 0.3, 0.2, 0.1]}
    rep = classification_report(y, s, threshold=0.5, n_boot=200, seed=1)
    a = rep.labels["a"]
    # pairs pos>neg: 0.9 > all 3, 0.6 > 0.4 & 0.1, 0.3 > 0.1 -> 6 of 9
    assert a.auc == pytest.approx(6 / 9)
    assert (a.tp, a.fp, a.fn, a.tn) == (2, 1, 1, 2) and a.f1 == pytest.approx(2 / 3)
    b = rep.labels["b"]
    assert math.isnan(b.auc) and b.fp == 1 and b.f1 == 0.0  # one false positive, no positives
    assert rep.macro_auc == pytest.approx(6 / 9) and rep.n_auc_labels == 1
    assert rep.macro_f1 == pytest.approx((2 / 3 + 0.0) / 2)
    assert a.auc_ci.low <= a.auc <= a.auc_ci.high
    again = classification_report(y, s, threshold=0.5, n_boot=200, seed=1)
    assert repr(rep) == repr(again)  # seeded (repr: nan != nan)
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(5)
    Y = rng.integers(0, 2, (80, 3))
    S = Y + rng.normal(size=(80, 3))
    rep = classification_report(
        {str(j): Y[:, j] for j in range(3)},
        {str(j): S[:, j] for j in range(3)},
        threshold=0.5,
        n_boot=50,
    )
    for j in range(3):
        assert rep.labels[str(j)].auc == pytest.approx(metrics.roc_auc_score(Y[:, j], S[:, j]))
        assert rep.labels[str(j)].f1 == pytest.approx(metrics.f1_score(Y[:, j], S[:, j] >= 0.5))
    assert rep.macro_auc == pytest.approx(metrics.roc_auc_score(Y, S, average="macro"))


def test_eval_cxr_io_nih_and_covid(shared_data, tmp_path):
    nih = shared_data / "cxr" / "nih_cxr14_sample" / "labels.csv"
    labels = read_labels(nih)
    assert len(labels) == 30
    first = next(iter(labels.values()))
    assert next(iter(first)) == "Atelectasis" and len(first) == 14
    assert sum(v["Nodule"] for v in labels.values()) == 4
    assert sum(v["Pneumothorax"] for v in labels.values()) == 3
    covid = read_labels(shared_data / "cxr" / "covid_chestxray" / "metadata.csv")
    assert len(covid) == 183
    assert sum(v["COVID-19"] for v in covid.values()) == 124 + 4  # incl. "COVID-19, ARDS"
    assert sum(v["ARDS"] for v in covid.values()) == 3 + 4
    # a scores file keyed by absolute paths joins by unique base name
    rng = np.random.default_rng(0)
    lines = ["image_file,Nodule,Mass,Other"]
    for k in labels:
        lines.append(f"/somewhere/{k.split('/')[-1]},{rng.random():.4f},{rng.random():.4f},x")
    (tmp_path / "scores.csv").write_text("\n".join(lines) + "\n")
    y, s, keys = join(labels, read_scores(tmp_path / "scores.csv"))
    assert sorted(y) == ["Mass", "Nodule"] and len(keys) == 30
    assert y["Nodule"].sum() == 4
    rep = classification_report(y, s, n_boot=100)
    assert rep.n_auc_labels == 2
    assert rep.labels["Nodule"].auc == pytest.approx(stats.roc_auc(y["Nodule"], s["Nodule"]))

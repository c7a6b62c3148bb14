"""`medlens eval cxr` and `medlens eval reports` through the CLI entry point.

cxr: the scores come from a real scorer run (`medlens classify --json` with the tiny
MedSigLIP test model) on the shared NIH sample, and the CLI's AUCs are recomputed here
from the joined files. reports: hand-built pairs with known label F1 and identical pairs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medlens.cli.main import app
from medlens.evaluation import stats
from medlens.evaluation.cxr_io import read_labels

runner = CliRunner()


def test_eval_cxr_cli_on_classify_output(tmp_path, shared_data, nih_images, tiny_test_models):
    res = runner.invoke(
        app,
        ["classify", *map(str, nih_images), "--labels", "cxr", "--model", "medlens/test-medsiglip",
         "--json"],
    )
    assert res.exit_code == 0, res.output
    scores_file = tmp_path / "scores.json"
    scores_file.write_text(res.stdout)
    labels_file = shared_data / "cxr" / "nih_cxr14_sample" / "labels.csv"
    out = tmp_path / "cxr.json"
    res = runner.invoke(
        app,
        ["eval", "cxr", "--labels", str(labels_file), "--scores", str(scores_file),
         "--n-boot", "200", "--output", str(out), "--json"],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["n_images"] == len(nih_images) == 30

    # Recompute every defined AUC from the two files, joined by image base name.
    truth = {Path(k).name: v for k, v in read_labels(labels_file).items()}
    results = json.loads(scores_file.read_text())["results"]
    probs = {Path(r["image"]).name: r["probabilities"] for r in results}
    common = sorted(set(next(iter(truth.values()))) & set(next(iter(probs.values()))))
    assert {"Atelectasis", "Cardiomegaly", "Pneumothorax"} <= set(common)
    checked = 0
    for label in common:
        y = np.array([truth[k][label] for k in sorted(truth)])
        s = np.array([probs[k][label] for k in sorted(truth)])
        row = data["labels"][label]
        if 0 < y.sum() < len(y):
            assert row["auc"] == pytest.approx(stats.roc_auc(y, s))
            checked += 1
        else:
            assert row["auc"] is None
    assert checked >= 1 and data["labels"]["Pneumothorax"]["auc"] is not None

    text = runner.invoke(
        app, ["eval", "cxr", "--labels", str(labels_file), "--scores", str(scores_file),
              "--n-boot", "50"],
    )
    assert text.exit_code == 0 and "30 images" in text.output and "AUC" in text.output


def test_eval_reports_cli(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    rows = [
        {"id": "1", "generated": "Cardiomegaly. No pleural effusion.",
         "reference": "Moderate cardiomegaly. Small left pleural effusion."},
        {"id": "2", "generated": "Right pneumothorax.", "reference": "Large right pneumothorax."},
    ]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = runner.invoke(app, ["eval", "reports", "--pairs", str(pairs), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["n"] == 2
    # Cardiomegaly: tp 1; Pneumothorax: tp 1; Pleural Effusion: fn 1 -> F1 1, 1, 0.
    per = data["per_label"]
    assert per["Cardiomegaly"]["f1"] == 1.0 and per["Pneumothorax"]["f1"] == 1.0
    assert per["Pleural Effusion"]["f1"] == 0.0
    assert "chexbert" in data["model_metrics"]

    same = tmp_path / "same.jsonl"
    same.write_text("".join(
        json.dumps({"id": r["id"], "generated": r["reference"], "reference": r["reference"]}) + "\n"
        for r in rows
    ))
    res = runner.invoke(app, ["eval", "reports", "--pairs", str(same)])
    assert res.exit_code == 0, res.output
    assert "macro F1 1.000" in res.output and "ROUGE-L F1 1.0000" in res.output


def test_eval_cli_bad_input_is_one_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "generated": "x"\n')
    cmd = [sys.executable, "-m", "medlens.cli.main", "eval"]
    for args, needle in [
        (["reports", "--pairs", str(bad)], "not valid JSONL"),
        (["compare", str(tmp_path / "nope"), str(tmp_path / "nope2")], "nope"),
        (["cxr", "--labels", str(bad), "--scores", str(bad)], "bad.jsonl"),
    ]:
        proc = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0, args
        assert proc.stderr.startswith("error: ") and needle in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1

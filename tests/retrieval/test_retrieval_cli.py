"""CLI end to end with the real tiny MedSigLIP test encoder (random weights, real code path).

The shared CXR sets are added through `medlens library add` and searched by image and
by text; results must list the matched image file names. Then a probe is trained on the
library and zero-shot / probe evaluation run against the labelled CSV.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medlens.cli.main import app

ENC = "medlens/test-medsiglip"
runner = CliRunner()


@pytest.fixture
def isolated_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_test_models) -> Path:
    # Data dir (test models, blobs) stays the session's; the database is per test.
    db = tmp_path / "medlens.db"
    monkeypatch.setenv("MEDLENS_DATABASE_URL", f"sqlite:///{db}")
    return db


def _run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    if result.exit_code != 0:
        raise AssertionError(f"{args} -> {result.exit_code}\n{result.output}\n{result.exception!r}")
    return result.stdout  # stderr holds progress and library log lines


def _covid_subset(shared: Path, tmp: Path, n: int) -> Path:
    """The COVID metadata.csv format with its first n rows (image paths made absolute)."""
    src = shared / "cxr" / "covid_chestxray"
    with (src / "metadata.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        rows = [r for _, r in zip(range(n), reader, strict=False)]
        fields = reader.fieldnames
    out = tmp / "covid" / "metadata.csv"
    out.parent.mkdir()
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({**r, "image_file": str(src / r["image_file"])})
    return out


def test_add_and_search_both_shared_cxr_sets(isolated_db, shared_data, tmp_path) -> None:
    nih = shared_data / "cxr" / "nih_cxr14_sample"
    out = _run("library", "add", str(nih), "--model", ENC, "--library", "cxr")
    assert "added 30 case(s) (30 embedded, 0 from cache)" in out
    covid_csv = _covid_subset(shared_data, tmp_path, 12)
    out = _run("library", "add", str(covid_csv), "--model", ENC, "--library", "cxr")
    assert "added 12 case(s)" in out and "42 case(s) in total" in out

    query = nih / "images" / "00030183_005.png"
    out = _run("library", "search", str(query), "-k", "5", "--model", ENC, "--library", "cxr")
    lines = out.strip().splitlines()
    assert lines[0].split()[:3] == ["rank", "similarity", "file"]
    assert lines[1].split()[2] == "00030183_005.png"  # the image itself, similarity 1
    assert float(lines[1].split()[1]) == pytest.approx(1.0, abs=1e-4)
    assert len(lines) == 6

    data = json.loads(_run("library", "search", "--text", "A chest X-ray with pneumonia.",
                           "-k", "42", "--model", ENC, "--library", "cxr", "--json"))
    names = {r["filename"] for r in data["results"]}
    assert len(data["results"]) == 42 and "00030183_005.png" in names
    covid_names = {Path(r["image_file"]).name for r in csv.DictReader(covid_csv.open())}
    assert covid_names <= names
    sims = [r["similarity"] for r in data["results"]]
    assert sims == sorted(sims, reverse=True)

    out = _run("library", "list")
    assert "cxr: 42 case(s)" in out and "medlens/test-medsiglip@" in out


def test_classify_probe_and_evaluate(isolated_db, shared_data, tmp_path) -> None:
    nih = shared_data / "cxr" / "nih_cxr14_sample"
    img = nih / "images" / "00029699_000.png"
    res = json.loads(_run("classify", str(img), "--labels", "cxr", "--model", ENC, "--json"))
    probs = res["results"][0]["probabilities"]
    assert len(probs) == 14 and all(0.0 <= p <= 1.0 for p in probs.values())
    assert "Not a medical device" in res["disclaimer"] and "TEST MODEL" in res["disclaimer"]
    out = _run("classify", str(img), "--labels", "fundus", "--model", ENC)
    assert "No DR" in out and "Not a medical device" in out

    _run("library", "add", str(nih), "--model", ENC, "--library", "nih")
    probe_dir = tmp_path / "probes"
    # NIH "urgent" (= Pneumothorax): all 3 positives are one patient, so patient-grouped
    # cross-validation is impossible and training refuses rather than report a leaky AUC.
    refused = runner.invoke(app, ["probe", "train", "--library", "nih", "--label", "urgent",
                                  "--model", ENC, "--out", str(probe_dir)])
    assert refused.exit_code != 0 and "fewer than 2 patients" in str(refused.exception)
    out = _run("probe", "train", "--library", "nih", "--label", "No Finding", "--name",
               "normal", "--model", ENC, "--n-boot", "100", "--out", str(probe_dir))
    assert "cross-validated AUC" in out and "positives=23" in out
    assert "grouped by patient" in out
    (path,) = probe_dir.glob("normal-*.json")
    shown = json.loads(_run("probe", "show", str(path), "--json"))
    assert shown["label"] == "No Finding" and shown["encoder_id"].startswith(ENC + "@")

    ev = json.loads(_run("classify-eval", str(nih), "--labels", "cxr", "--model", ENC,
                         "--n-boot", "50", "--json"))
    assert ev["n_images"] == 30
    pt = ev["per_label"]["Pneumothorax"]
    assert pt["n"] == 30 and pt["n_positive"] == 3 and 0.0 <= pt["auc"] <= 1.0
    assert ev["per_label"]["Fracture"]["auc"] is None  # no NIH column: no fake 0.5
    pe = json.loads(_run("probe", "evaluate", str(path), str(nih), "--model", ENC,
                         "--n-boot", "50"))
    assert pe["n"] == 30 and pe["probe"]["version"] == shown["version"]


def test_search_errors_are_one_line(isolated_db) -> None:
    result = runner.invoke(app, ["library", "search", "--model", ENC])
    assert result.exit_code != 0 and "exactly one" in str(result.exception)


@pytest.mark.slow
def test_full_covid_set_from_cli(isolated_db, shared_data) -> None:
    covid = shared_data / "cxr" / "covid_chestxray"
    out = _run("library", "add", str(covid), "--model", ENC, "--library", "covid")
    assert "added 183 case(s)" in out
    q = covid / "images" / sorted(p.name for p in (covid / "images").iterdir())[0]
    out = _run("library", "search", str(q), "-k", "3", "--model", ENC, "--library", "covid")
    assert q.name in out.splitlines()[1]

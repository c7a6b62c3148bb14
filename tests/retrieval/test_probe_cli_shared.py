"""`medlens probe train|evaluate` on libraries built from ../shared/data (issue 23, point 8).

Labels come from the case library (the ones `library search` shows); the split is by
patient. The expected outcome is derived from the data: in the NIH sample, `urgent`
(= Pneumothorax) positives all belong to one patient, so training must refuse with a
one-line message saying how many patients it found and what to add; once COVID cases
from more urgent patients are added, the same command must train.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medlens.cli.main import app
from medlens.errors import ConfigError

ENC = "medlens/test-medsiglip"
runner = CliRunner()


@pytest.fixture
def isolated_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_test_models) -> Path:
    db = tmp_path / "medlens.db"
    monkeypatch.setenv("MEDLENS_DATABASE_URL", f"sqlite:///{db}")
    return db


def _ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    if result.exit_code != 0:
        raise AssertionError(f"{args} -> {result.exit_code}\n{result.output}\n{result.exception!r}")
    return result.stdout


def _refused(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, ConfigError), repr(result.exception)
    message = str(result.exception)
    assert "\n" not in message
    return message


def _nih_urgent_patients(nih: Path) -> tuple[int, int, set[str], set[str]]:
    """(positive images, negative images, positive patients, negative patients)."""
    rows = list(csv.DictReader((nih / "labels.csv").open(newline="")))
    pos = [r for r in rows if r["Pneumothorax"] == "1"]
    neg = [r for r in rows if r["Pneumothorax"] == "0"]
    return len(pos), len(neg), {r["patient_id"] for r in pos}, {r["patient_id"] for r in neg}


def _covid_subset(shared: Path, tmp: Path, n: int) -> Path:
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


def test_nih_urgent_names_what_is_missing_then_trains_with_more_patients(
    isolated_db, shared_data, tmp_path
) -> None:
    nih = shared_data / "cxr" / "nih_cxr14_sample"
    n_pos, n_neg, pos_pat, neg_pat = _nih_urgent_patients(nih)
    assert len(pos_pat) == 1  # the shared sample's fact this test is about
    _ok("library", "add", str(nih), "--encoder", ENC, "--library", "nih")
    probes = tmp_path / "probes"

    # No --encoder: the library's only embedding space is used (not settings.encoder).
    msg = _refused("probe", "train", "--label", "urgent", "--library", "nih",
                   "--out", str(probes))
    assert f"{n_pos} positive case(s) from 1 patient(s)" in msg
    assert f"{n_neg} negative from {len(neg_pat)}" in msg
    assert "fewer than 2 patients" in msg and "urgent=1 cases from 1 more patient(s)" in msg
    assert "medlens library add DIR --library nih" in msg
    assert "No Finding, Nodule" in msg  # NIH labels with both values in >= 2 patients
    assert not probes.exists()

    # The hidden old flag still works and gives the same answer.
    assert _refused("probe", "train", "--label", "urgent", "--library", "nih",
                    "--model", ENC) == msg

    # Urgent COVID cases (ICU / intubated / died) from more patients make it trainable.
    covid = _covid_subset(shared_data, tmp_path, 40)
    _ok("library", "add", str(covid), "--encoder", ENC, "--library", "nih")
    out = _ok("probe", "train", "--label", "urgent", "--library", "nih", "--encoder", ENC,
              "--n-boot", "50", "--out", str(probes))
    assert "grouped by patient" in out and "n=" in out
    n_total = int(out.split("n=")[1].split()[0])
    assert n_total > n_pos + n_neg  # NIH rows plus the COVID rows with an urgent value
    (path,) = probes.glob("urgent-*.json")

    # evaluate defaults to the probe's own encoder; --encoder is accepted too.
    ev = _ok("probe", "evaluate", str(path), str(nih), "--n-boot", "20")
    assert '"n": 30' in ev
    ev = _ok("probe", "evaluate", str(path), str(nih), "--encoder", ENC, "--n-boot", "20")
    assert '"n": 30' in ev


def test_missing_vectors_label_and_library_are_named(isolated_db, shared_data) -> None:
    nih = shared_data / "cxr" / "nih_cxr14_sample"
    _ok("library", "add", str(nih), "--encoder", ENC)  # the default library
    msg = _refused("probe", "train", "--label", "urgent", "--encoder", "google/medsiglip-448")
    assert "has 30 case(s) but no vectors from encoder google/medsiglip-448" in msg
    assert f"Pass --encoder {ENC}" in msg
    msg = _refused("probe", "train", "--label", "nodule", "--encoder", ENC)
    assert "did you mean 'Nodule'?" in msg and "urgent" in msg
    msg = _refused("probe", "train", "--label", "urgent", "--library", "nothing-here")
    assert "Library 'nothing-here' has no cases" in msg


def test_refusal_is_one_line_on_stderr_without_traceback(isolated_db, shared_data) -> None:
    nih = shared_data / "cxr" / "nih_cxr14_sample"
    _ok("library", "add", str(nih), "--encoder", ENC)
    proc = subprocess.run(
        [sys.executable, "-c", "from medlens.cli.main import main; main()",
         "probe", "train", "--label", "urgent"],
        capture_output=True, text=True, env=os.environ.copy(), timeout=120, check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "from 1 patient(s)" in errors[0]


def test_help_shows_encoder_not_model() -> None:
    for cmd in ("train", "evaluate"):
        text = runner.invoke(app, ["probe", cmd, "--help"], env={"COLUMNS": "200"}).stdout
        assert "--encoder" in text and "--model" not in text

"""`medlens interpret FILE.dcm --sr OUT_DIR`: the same SR objects, written locally, no PACS
(real CLI process, tiny test models through the real loader)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pydicom

from .results_helpers import RG1, dciodvfy_errors


def test_interpret_sr_writes_valid_objects_with_the_files_identity(tmp_path: Path):
    out = tmp_path / "sr"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MEDLENS_DATA_DIR": str(tmp_path / "data")}
    run = subprocess.run(
        [sys.executable, "-m", "medlens.cli.main", "interpret", str(RG1),
         "--model", "medlens/test-medgemma", "--sr", str(out), "--overlay", "gsps",
         "--max-new-tokens", "24"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    files = sorted(out.glob("*.dcm"))
    assert [f.name.split("-")[0] for f in files] == ["findings", "gsps", "narrative"]
    source = pydicom.dcmread(RG1, stop_before_pixels=True)
    for path in files:
        ds = pydicom.dcmread(path)
        assert ds.StudyInstanceUID == source.StudyInstanceUID
        assert ds.PatientID == source.PatientID
        assert dciodvfy_errors(path) == [], path.name
    bad = subprocess.run(
        [sys.executable, "-m", "medlens.cli.main", "interpret", str(RG1), "--model",
         "medlens/test-medgemma", "--sr", str(out), "--overlay", "nope"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert bad.returncode != 0 and "Unknown overlay" in bad.stderr + bad.stdout
    assert "Traceback" not in bad.stderr

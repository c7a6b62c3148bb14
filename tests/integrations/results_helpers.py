"""Shared inputs for the result-object tests: an Interpretation and real DICOM sources."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from medlens.tasks.interpret.result import (
    FindingScore,
    ImageFindingScores,
    Interpretation,
    ModelProvenance,
    PromptRef,
    Provenance,
    ReportSections,
)

# Same rule as tests/conftest.py's shared_data: MEDLENS_SHARED_DATA, else ../shared/data.
_REPO = Path(__file__).resolve().parents[2]
DICOM_DIR = Path(os.environ.get("MEDLENS_SHARED_DATA", _REPO.parent / "shared" / "data")) / "dicom"
RG1 = DICOM_DIR / "RG1_J2KI.dcm"
CT = DICOM_DIR / "CT_small.dcm"


def _model(model_id: str, revision: str) -> ModelProvenance:
    return ModelProvenance(model_id=model_id, backend="transformers", source="test",
                           revision=revision, weights_hash="0" * 8, dtype="float32",
                           device="cpu", is_test=True)  # fmt: skip


def interpretation(study_id: str = "s1") -> Interpretation:
    return Interpretation(
        study_id=study_id, status="complete",
        report=ReportSections(findings="Small right pleural effusion.",
                              impression="Right pleural effusion.", raw_text="x",
                              parse_quality="structured"),
        finding_scores=[ImageFindingScores(image_index=0, label_set="cxr", scores=[
            FindingScore(label="Pleural Effusion", probability=0.81),
            FindingScore(label="Pneumothorax", probability=0.04),
            FindingScore(label="Lung Opacity", probability=0.55)])],
        provenance=Provenance(
            medlens_version="0.1.0", created_at="2026-11-28T05:00:00+00:00",
            generator=_model("medlens/test-medgemma", "rev-g"),
            encoder=_model("medlens/test-medsiglip", "rev-e"),
            prompt=PromptRef(name="cxr_report", version="3", prompt_format="chat")),
        test_model_label="TEST MODEL: output is not medical",
    )  # fmt: skip


def dciodvfy_errors(path: Path) -> list[str]:
    """dciodvfy's Error lines (skip without it, except on CI where it must be installed)."""
    if shutil.which("dciodvfy") is None:
        if os.environ.get("MEDLENS_CI") == "1":
            pytest.fail("dciodvfy (Debian dicom3tools) is missing on CI")
        pytest.skip("dciodvfy (Debian dicom3tools) is not installed")
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [ln for ln in (run.stdout + run.stderr).splitlines() if ln.startswith("Error")]

"""Reading the shared labelled CXR CSVs (and the derived demo label `urgent`)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from medlens.errors import DataError
from medlens.tasks.retrieval.cases_csv import find_cases, read_cases_csv


def test_nih_labels_csv(shared_data: Path) -> None:
    folder = shared_data / "cxr" / "nih_cxr14_sample"
    cases = find_cases(folder)
    rows = list(csv.DictReader((folder / "labels.csv").open()))
    assert len(cases) == len(rows) == 30
    for case, row in zip(cases, rows, strict=True):
        assert case.path == (folder / row["image_file"]).resolve() and case.path.is_file()
        assert case.labels["Pneumothorax"] == int(row["Pneumothorax"])
        assert case.labels["urgent"] == int(row["Pneumothorax"])  # documented demo rule
        assert case.labels["No Finding"] == int(row["finding_labels"] == "No Finding")
        assert case.report is None
    assert sum(c.labels["urgent"] for c in cases) == 3  # MANIFEST: Pneumothorax 3


def test_covid_metadata_csv(shared_data: Path) -> None:
    folder = shared_data / "cxr" / "covid_chestxray"
    cases = find_cases(folder)
    rows = list(csv.DictReader((folder / "metadata.csv").open()))
    assert len(cases) == 183
    for case, row in zip(cases, rows, strict=True):
        flags = [row["went_icu"], row["in_icu"], row["intubated"]]
        positive = "Y" in flags or row["survival"] == "N"
        known = any(flags) or bool(row["survival"])
        if positive:
            assert case.labels["urgent"] == 1
        elif known:
            assert case.labels["urgent"] == 0
        else:
            assert "urgent" not in case.labels  # unknown stays unknown, never a negative
        assert case.labels["COVID-19"] == int("COVID-19" in row["finding"])
        assert case.report == (row["clinical_notes"].strip() or None)
    assert sum(c.labels["COVID-19"] for c in cases) == 128  # 124 + 4 "COVID-19, ARDS"
    by_patient: dict[str, set[str]] = {}
    for case, row in zip(cases, rows, strict=True):
        by_patient.setdefault(row["patientid"], set()).add(case.labels["patient_group"])
        assert case.labels["patient_group"] != row["patientid"]  # pseudonymous hash
    assert all(len(g) == 1 for g in by_patient.values())  # one key per patient
    assert len({next(iter(g)) for g in by_patient.values()}) == len(by_patient) == 99


def test_generic_csv_and_folder(tmp_path: Path, nih_images: list[Path]) -> None:
    (tmp_path / "a.png").write_bytes(nih_images[0].read_bytes())
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.png").write_bytes(nih_images[1].read_bytes())
    assert [c.case_id for c in find_cases(tmp_path)] == ["a.png", "sub/b.png"]
    csv_path = tmp_path / "cases.csv"
    csv_path.write_text("image_file,case_id,report,urgent,site\na.png,c1,Clear lungs.,1,north\n")
    (case,) = read_cases_csv(csv_path)
    assert case.case_id == "c1" and case.report == "Clear lungs."
    assert case.labels == {"urgent": 1, "site": "north"}
    bad = tmp_path / "bad.csv"
    bad.write_text("name\nx\n")
    with pytest.raises(DataError, match="image_file"):
        read_cases_csv(bad)


def test_retrieval_modules_do_not_import_torch() -> None:
    code = ("import sys, medlens.tasks.retrieval.library, medlens.tasks.classify.zero_shot, "
            "medlens.tasks.classify.probes, "
            "medlens.cli.library, medlens.cli.classify, medlens.cli.probe; "
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]

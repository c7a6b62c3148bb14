"""Probe finding: PatientBirthDate was date-shifted (so the exact age survived beside the
shifted study date). It is emptied now; an age band is kept only on request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from pydicom import dcmread
from typer.testing import CliRunner

from medlens.cli.deid import register
from medlens.imaging.deid import DeidPolicy, age_band, deidentify


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:  # a group, as in medlens.cli.main
        pass

    register(app)
    return app


def _birth_dates(ds: Any) -> list[str]:
    found = []
    for elem in ds.iterall():  # every level, sequences included
        if elem.keyword == "PatientBirthDate" and elem.value not in (None, "", b""):
            found.append(str(elem.value))
    return found


@pytest.mark.parametrize("dates", ["shift", "remove"])
def test_deid_cli_leaves_no_birth_date_in_any_file(
    dicom_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dates: str
) -> None:
    monkeypatch.setenv("MEDLENS_SITE_SECRET", "birth-secret")
    monkeypatch.setenv("MEDLENS_DATA_DIR", str(tmp_path / "data"))
    sources = sorted(dicom_dir.glob("*.dcm"))
    assert any(_birth_dates(dcmread(p)) for p in sources)  # the inputs do carry one
    out = tmp_path / "out"
    result = CliRunner().invoke(_app(), ["deid", str(dicom_dir), str(out), "--dates", dates])
    assert result.exit_code == 0, result.output
    written = sorted(out.glob("*.dcm"))
    assert len(written) == len(sources)
    for path in written:
        ds = dcmread(path)
        assert _birth_dates(ds) == [], path.name
        assert "PatientAge" not in ds  # no age band unless asked for


def test_age_band_kept_as_patient_age_only_on_request(dicom_dir: Path) -> None:
    source = dicom_dir / "RG1_J2KI.dcm"  # born 1940-03-05, study 2004-08-26: aged 64
    ds = deidentify(dcmread(source), DeidPolicy(secret=b"s", age_band=True)).dataset
    assert ds.PatientAge == "060Y" and _birth_dates(ds) == []
    plain = deidentify(dcmread(source), DeidPolicy(secret=b"s")).dataset
    assert "PatientAge" not in plain and _birth_dates(plain) == []


def test_age_band_rules() -> None:
    from pydicom.dataset import Dataset

    def band(**tags: str) -> str | None:
        ds = Dataset()
        for k, v in tags.items():
            setattr(ds, k, v)
        return age_band(ds)

    assert band(PatientBirthDate="19500610", StudyDate="20200609") == "065Y"  # 69 → 65-69
    assert band(PatientBirthDate="19200101", StudyDate="20200101") == "090Y"  # 100 → 90+
    assert band(PatientBirthDate="11111111", StudyDate="20051130", PatientAge="058Y") == "055Y"
    assert band(PatientAge="006M") == "000Y"
    assert band(StudyDate="20200101") is None

"""`medlens deid IN OUT` on a folder and a file, with both burned-in policies."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer
from PIL import Image
from pydicom import dcmread
from typer.testing import CliRunner

from medlens.cli.deid import register


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:  # a group, as in medlens.cli.main
        pass

    register(app)
    return app


def test_deid_folder_prints_table_and_writes_clean_files(
    dicom_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("MEDLENS_SITE_SECRET", "cli-secret")
    monkeypatch.setenv("COLUMNS", "250")
    src = tmp_path / "in"
    shutil.copytree(dicom_dir, src)
    jpeg_src = src / "photo.jpg"
    exif = Image.Exif()
    exif[0x010E] = "Doe^Jane"
    Image.new("L", (80, 80), 90).save(jpeg_src, exif=exif.tobytes())
    out = tmp_path / "out"
    result = CliRunner().invoke(_app(), ["deid", str(src), str(out), "--dates", "remove"])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "De-identification" in text and "uid-remapped" in text
    assert "RG1_J2KI.dcm" in text and "skipped" in text  # MANIFEST.md etc. are skipped
    written = sorted(out.iterdir())
    dicoms = [p for p in written if p.suffix == ".dcm"]
    assert len(dicoms) == 7  # MR_small and MR_small_RLE share a SOP UID: both kept
    for p in dicoms:
        assert p.name.startswith("2.25.")
        ds = dcmread(p)
        assert ds.PatientName == "" and ds.PatientID == ""
        assert ds.StudyDate in ("", None) or "StudyDate" not in ds
    pngs = [p for p in written if p.suffix == ".png"]
    assert len(pngs) == 1 and b"Doe^Jane" not in pngs[0].read_bytes()


def test_deid_block_policy_blocks_images_but_not_reports(dicom_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        _app(), ["deid", str(dicom_dir / "CT_small.dcm"), str(out), "--burned-in", "block"]
    )
    assert result.exit_code == 1
    assert "blocked" in result.output and not list(out.iterdir())
    result = CliRunner().invoke(
        _app(), ["deid", str(dicom_dir / "test-SR.dcm"), str(out), "--burned-in", "block"]
    )
    assert result.exit_code == 0 and len(list(out.iterdir())) == 1


def test_out_inside_in_refused(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    result = CliRunner().invoke(
        _app(), ["deid", str(tmp_path / "in"), str(tmp_path / "in" / "out")]
    )
    assert result.exit_code != 0

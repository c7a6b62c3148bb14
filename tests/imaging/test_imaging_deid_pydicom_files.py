"""Every file pydicom ships (`pydicom.data.get_testdata_files()`) through `medlens deid`
and `medlens interpret` (issue 23, point 7): written or refused with a reason, never a
traceback; a de-identified file has no dciodvfy error that its original did not have."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pydicom.data
import pytest
from pydicom import dcmread
from typer.testing import CliRunner, Result

from medlens.cli.main import app

runner = CliRunner()
_FILES = sorted({Path(p) for p in pydicom.data.get_testdata_files() if Path(p).is_file()})
# Values deid legitimately changes (UIDs, dates, numbers) are normalised out of the lines.
_VALUE = re.compile(r"<[0-9.:+\-]*>")


def _deid(src: Path, out: Path) -> Result:
    return runner.invoke(app, ["deid", str(src), str(out)], env={"COLUMNS": "80"})


def _clean_exit(res: Result) -> None:
    assert "Traceback" not in res.output, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code in (0, 1), res.output


def _dciodvfy_errors(path: Path) -> set[str]:
    proc = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    lines = (proc.stdout + proc.stderr).splitlines()
    return {_VALUE.sub("<v>", line.strip()) for line in lines if line.startswith("Error")}


@pytest.fixture(scope="module")
def deid_runs(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, Path, Result]]:
    os.environ.setdefault("MEDLENS_SITE_SECRET", "pydicom-files-secret")
    out_dir = tmp_path_factory.mktemp("deid-pydicom")
    runs = []
    for i, src in enumerate(_FILES):
        out = out_dir / f"{i:03d}-out.dcm"  # OUT ends in .dcm: a file, not a folder
        runs.append((src, out, _deid(src, out)))
    return runs


def test_pydicom_ships_test_files() -> None:
    assert len(_FILES) >= 80  # the bundled ones; more when pydicom-data is cached


def test_every_file_written_or_refused_with_reason(deid_runs: list) -> None:
    written = refused = 0
    for src, out, res in deid_runs:
        _clean_exit(res)
        assert max(len(line) for line in res.output.splitlines()) <= 80, src.name
        if res.exit_code == 0:
            written += 1
            assert out.is_file(), src.name  # a file named OUT.dcm, never a folder
            ds = dcmread(out)
            assert ds.PatientIdentityRemoved in ("YES", "NO")
            if "SOPInstanceUID" in ds:  # a few test files have none (meta kept, remapped)
                assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
            assert ds.file_meta.TransferSyntaxUID
        else:
            refused += 1
            assert not out.exists(), src.name
            assert "skipped" in res.output or "blocked" in res.output, res.output
            assert "0 of 1 file(s) written" in res.output
    assert written >= 60 and refused >= 10, (written, refused)


@pytest.mark.parametrize(
    "name",
    [
        "ExplVR_LitEndNoMeta.dcm",
        "empty_charset_LEI.dcm",
        "meta_missing_tsyntax.dcm",
        "nested_priv_SQ.dcm",
    ],
)
def test_missing_file_meta_rebuilt_or_refused_with_reason(deid_runs: list, name: str) -> None:
    _src, out, res = next(r for r in deid_runs if r[0].name == name)
    text = " ".join(res.output.split())  # the table folds long notes over lines
    if name == "ExplVR_LitEndNoMeta.dcm":  # has SOP Class/Instance: meta rebuilt
        assert res.exit_code == 0 and dcmread(out).file_meta.TransferSyntaxUID.is_little_endian
    else:  # no SOP Class UID anywhere: cannot be a valid Part 10 file
        assert res.exit_code == 1 and "SOPClassUID" in text, res.output


def test_overlay_plane_removed_whole(deid_runs: list) -> None:
    src, out, res = next(r for r in deid_runs if r[0].name == "examples_overlay.dcm")
    assert res.exit_code == 0
    assert any(e.tag.group == 0x6000 for e in dcmread(src))
    assert not any(0x6000 <= e.tag.group <= 0x601E for e in dcmread(out))


def test_outputs_introduce_no_dciodvfy_error(deid_runs: list) -> None:
    if shutil.which("dciodvfy") is None:
        if os.environ.get("MEDLENS_CI") == "1":
            pytest.fail("dciodvfy missing: scripts/services.sh installs dicom3tools")
        pytest.skip("dciodvfy (Debian dicom3tools) not installed")
    checked, new_errors = 0, {}
    for src, out, res in deid_runs:
        if res.exit_code != 0:
            continue
        checked += 1
        added = _dciodvfy_errors(out) - _dciodvfy_errors(src)
        if added:
            new_errors[src.name] = sorted(added)
    assert checked >= 60
    assert not new_errors, new_errors


def test_deid_out_dcm_with_folder_input_is_refused(tmp_path: Path) -> None:
    res = _deid(_FILES[0].parent, tmp_path / "out.dcm")
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "names a file but IN is a folder" in " ".join(res.output.split())
    assert not (tmp_path / "out.dcm").exists()


def test_every_file_through_interpret(tiny_test_models: dict) -> None:
    """The full `medlens interpret` with the tiny test models: a result (exit 0, or 3 when
    every image is refused by the gate) or a one-line refusal (exit 2), never a traceback."""
    codes: dict[int, int] = {}
    for src in _FILES:
        res = runner.invoke(
            app,
            [
                "interpret",
                str(src),
                "--model",
                "medlens/test-medgemma",
                "--max-new-tokens",
                "4",
                "--json",
            ],
        )
        assert "Traceback" not in res.output, (src.name, res.output)
        assert res.exception is None or isinstance(res.exception, SystemExit), src.name
        assert res.exit_code in (0, 2, 3), (src.name, res.exit_code, res.output)
        if res.exit_code == 2:
            lines = res.stderr.strip().splitlines()
            assert lines and lines[-1].startswith("error: "), (src.name, res.stderr)
        codes[res.exit_code] = codes.get(res.exit_code, 0) + 1
    assert sum(codes.values()) == len(_FILES) and codes.get(2, 0) >= 10, codes

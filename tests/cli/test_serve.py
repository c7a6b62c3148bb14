"""`medlens serve`: demo mode keeps its own data folder unless one is chosen (issue 23)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from medlens.cli.main import app


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """Runs `serve` up to uvicorn (not started) with HOME in tmp_path; returns what it got."""
    import uvicorn

    got: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app_, **kw: got.update(app=app_, **kw))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("MEDLENS_DATA_DIR", raising=False)
    monkeypatch.delenv("MEDLENS_DEMO", raising=False)
    return got


def _data_dir(got: dict[str, Any]) -> Path:
    return got["app"].state.settings.data_path


def test_demo_without_data_dir_uses_the_demo_folder(served, tmp_path: Path):
    res = CliRunner().invoke(app, ["serve", "--demo", "--port", "8123"])
    assert res.exit_code == 0, res.output
    demo_dir = tmp_path / ".medlens" / "demo"
    assert _data_dir(served) == demo_dir and demo_dir.is_dir()
    assert f"(data: {demo_dir})" in res.output and "DEMO MODE" in res.output


def test_demo_from_env_also_uses_the_demo_folder(served, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MEDLENS_DEMO", "1")
    assert CliRunner().invoke(app, ["serve"]).exit_code == 0
    assert _data_dir(served) == tmp_path / ".medlens" / "demo"


@pytest.mark.parametrize("how", ["flag", "env"])
def test_an_explicit_data_dir_is_kept_in_demo_mode(served, tmp_path: Path, monkeypatch, how):
    chosen = tmp_path / "mine"
    args = ["serve", "--demo"]
    if how == "flag":
        args += ["--data-dir", str(chosen)]
    else:
        monkeypatch.setenv("MEDLENS_DATA_DIR", str(chosen))
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert _data_dir(served) == chosen


def test_real_mode_keeps_the_default_folder(served, tmp_path: Path):
    res = CliRunner().invoke(app, ["serve"])
    assert res.exit_code == 0, res.output
    assert _data_dir(served) == tmp_path / ".medlens" and "DEMO" not in res.output


def test_start_line_names_the_report_model_and_its_path(served, monkeypatch):
    monkeypatch.delenv("MEDLENS_QUANTIZE", raising=False)
    monkeypatch.delenv("MEDLENS_GENERATOR", raising=False)
    res = CliRunner().invoke(app, ["serve", "--port", "8124"])
    assert res.exit_code == 0, res.output
    line = next(x for x in res.output.splitlines() if x.startswith("Report model:"))
    assert "google/medgemma" in line and "int8 weights" in line and "MEDLENS_QUANTIZE" in line
    demo = CliRunner().invoke(app, ["serve", "--demo", "--port", "8125"]).output
    assert "Report model: medlens/demo on scripted backend" in demo

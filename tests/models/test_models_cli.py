"""`medlens models list|info|pull|make-test` through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medlens.cli.main import app

runner = CliRunner()


def test_list_json_shows_local_status(tiny_test_models: dict[str, Path]) -> None:
    result = runner.invoke(app, ["models", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["id"]: r for r in json.loads(result.stdout)}
    assert rows["medlens/test-medgemma"]["available"] is True
    assert rows["google/medgemma-4b-it"]["available"] is False
    assert "hf auth login" in rows["google/medgemma-4b-it"]["missing"]


def test_list_text_and_info() -> None:
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0 and "google/medsiglip-448" in result.stdout
    info = runner.invoke(app, ["models", "info", "google/medsiglip-448"])
    assert info.exit_code == 0, info.output
    assert "448x448" in info.stdout and "antialias=False" in info.stdout
    assert "missing" in info.stdout
    data = json.loads(runner.invoke(app, ["models", "info", "medlens/test-medgemma",
                                          "--json"]).stdout)
    assert data["is_test"] and data["preprocess"]["size"] == 64
    assert data["backend"] == {"name": "transformers", "installed": True, "extra": "hf"}


def test_errors_are_one_line_and_non_zero(tmp_path: Path) -> None:
    env_cmd = [sys.executable, "-m", "medlens.cli.main"]
    for args, needle in [
        (["models", "info", "nobody/nothing"], "Unknown model"),
        (["models", "pull", "google/medgemma-4b-it"], "Health AI Developer Foundations"),
        (["models", "pull", "medlens/test-medgemma"], "make-test"),
    ]:
        proc = subprocess.run([*env_cmd, *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0, args
        assert needle in proc.stderr and proc.stderr.startswith("error: ")
        assert "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.filterwarnings("ignore")
def test_make_test_builds_tiny_models(tmp_path: Path) -> None:
    result = runner.invoke(app, ["models", "make-test", str(tmp_path), "--no-realtext"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "medgemma-tiny" / "medlens_test_model.json").is_file()
    assert (tmp_path / "medsiglip-tiny" / "config.json").is_file()
    assert "not medical" in result.stdout


def test_fp16_setting_is_a_one_line_error() -> None:
    import os

    env = {**os.environ, "MEDLENS_DTYPE": "float16"}
    proc = subprocess.run([sys.executable, "-m", "medlens.cli.main", "models", "list"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode != 0
    assert proc.stderr.startswith("error: ") and "float16" in proc.stderr
    assert "Traceback" not in proc.stderr

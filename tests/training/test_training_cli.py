"""`medlens finetune` wiring: a 2-step run writes its outputs; bad input is one clear error."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from medlens.cli.main import app
from medlens.errors import ConfigError

runner = CliRunner()


def test_finetune_medgemma_cli_writes_adapter_and_entry(data_files, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        ["finetune", "medgemma", "--data", str(data_files["prompt-completion-jsonl"]),
         "--format", "prompt-completion-jsonl", "--base", "medlens/test-medgemma",
         "--output", str(out), "--steps", "2", "--batch", "2", "--grad-accum", "1",
         "--device", "cpu", "--id", "test/cli-adapter"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)  # stdout is the JSON result alone
    assert body["steps"] == 2 and Path(body["registry_entry"]).is_file()
    entry = json.loads((out / "registry_entry.json").read_text())
    assert entry["id"] == "test/cli-adapter" and entry["kind"] == "adapter"


def test_finetune_bad_format_is_a_config_error(data_files, tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(
        app,
        ["finetune", "medgemma", "--data", str(data_files["pairs-csv"]), "--format", "xlsx",
         "--base", "medlens/test-medgemma", "--output", str(tmp_path / "o")],
    )  # fmt: skip
    assert isinstance(result.exception, ConfigError)
    assert "Unknown data format 'xlsx'" in str(result.exception)

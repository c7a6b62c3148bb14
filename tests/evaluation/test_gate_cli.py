"""`medlens gate` on the command line: reports, exit codes, storage, `models info`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medlens.cli.main import app
from medlens.config import load_settings
from medlens.evaluation.gate import gate_from_predictions
from medlens.evaluation.gate_config import load_thresholds
from medlens.evaluation.gate_report import reports_dir, store

DATA = Path(__file__).parent / "data" / "gate"
BASE, CAND = str(DATA / "base.jsonl"), str(DATA / "candidate.jsonl")
runner = CliRunner()


def test_from_predictions_prints_the_paired_report_and_fails(tmp_path) -> None:
    out = tmp_path / "gate.json"
    res = runner.invoke(app, ["gate", "--from-predictions", BASE, CAND, "-o", str(out)])
    assert res.exit_code == 1, res.output
    assert "FAILED" in res.output and "80.0% (16/20)" in res.output
    assert "-25.0 pt" in res.output and "| 0.125 | 6 | 1 |" in res.output
    data = json.loads(out.read_text())
    row = data["qa"][0]
    assert (row["right_to_wrong"], row["wrong_to_right"], row["n"]) == (6, 1, 20)
    assert row["mcnemar"]["method"] == "exact-binomial"
    assert row["mcnemar"]["p_value"] == pytest.approx(0.125, abs=1e-12)
    assert data["passed"] is False and "Not a medical device" in data["disclaimer"]
    assert out.with_suffix(".md").read_text().startswith("# Quality gate")


def test_json_output_and_a_passing_gate(tmp_path) -> None:
    res = runner.invoke(app, ["gate", "--from-predictions", BASE, BASE, "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["passed"] and data["qa"][0]["difference"] == 0.0
    loose = tmp_path / "t.toml"
    loose.write_text("[qa]\nmax_accuracy_drop = 0.3\nmax_flip_rate = 0.4\n")
    res = runner.invoke(app, ["gate", "--from-predictions", BASE, CAND, "--thresholds", str(loose)])
    assert res.exit_code == 0, res.output  # McNemar p = 0.125 >= 0.05: not significant


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    code = "from medlens.cli.main import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )


def test_bad_input_exits_2_with_one_line(tmp_path) -> None:
    res = _cli("gate", "--from-predictions", BASE, str(tmp_path / "missing.jsonl"))
    assert res.returncode == 2 and res.stderr.startswith("error: Predictions not found")
    assert "Traceback" not in res.stderr
    res = _cli("gate", "medlens/gemma3-270m")
    assert res.returncode == 2 and "Give BASE and CANDIDATE" in res.stderr


def test_models_info_shows_the_latest_gate_report() -> None:
    settings = load_settings()
    report = gate_from_predictions(DATA / "base.jsonl", DATA / "candidate.jsonl", load_thresholds())
    report.base, report.candidate = "medlens/gemma3-270m", "medlens/gemma3-270m@int8"
    report.meta["candidate_weights_hash"] = "sha256:abcdef0123456789"
    path = store(report, settings.data_dir)
    assert path.name.endswith("Z-abcdef012345.json")  # keyed by time + weights hash
    assert path.parent == reports_dir(settings.data_dir, "medlens/gemma3-270m@int8")
    assert path.with_suffix(".md").is_file() and (path.parent / "latest.md").is_file()
    for model in ("medlens/gemma3-270m", "medlens/gemma3-270m@int8"):
        res = runner.invoke(app, ["models", "info", model])
        assert res.exit_code == 0, res.output
        assert "gate            medlens/gemma3-270m@int8 vs medlens/gemma3-270m: FAILED" in (
            res.output
        )
        assert "80.0% -> 55.0% (-25.0 pt" in res.output and "flips 6 right->wrong" in res.output
    res = runner.invoke(app, ["models", "info", "medlens/gemma3-270m@int8", "--json"])
    data = json.loads(res.stdout)
    assert data["options"]["quantize"] == "int8"
    assert data["gate_reports"]["medlens/gemma3-270m@int8"]["passed"] is False
    # A quantized variant without a report says how to get one.
    res = runner.invoke(app, ["models", "info", "medlens/gemma3-270m@int4"])
    assert "no gate report yet: run `medlens gate BASE medlens/gemma3-270m@int4`" in res.output


def test_suite_options_parse_task_count_and_file() -> None:
    from medlens.cli.gate import _suites
    from medlens.errors import ConfigError

    got = _suites(["medqa", "PubMedQA:7", "medmcqa:3:/x/held-out.jsonl"], 10, "target")
    assert [(s.task, s.limit, s.role) for s in got] == [
        ("medqa", 10, "target"),
        ("pubmedqa", 7, "target"),
        ("medmcqa", 3, "target"),
    ]
    assert got[2].data_file == Path("/x/held-out.jsonl") and got[0].data_file is None
    with pytest.raises(ConfigError, match="Bad suite"):
        _suites(["medqa:many"], None, "general")

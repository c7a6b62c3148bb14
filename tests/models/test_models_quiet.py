"""Third-party noise (transformers config warnings, "Loading weights" bars) stays out of
the default output of `medlens interpret` and `classify`, and comes back with --verbose.

Each command runs in a fresh process: transformers' warnings and bars fire once per
process, so an in-process run after other tests would prove nothing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

GENERATOR, ENCODER = "medlens/test-medgemma", "medlens/test-medsiglip"
_TQDM = re.compile(r"\d+%\|")  # "  0%|          | 0/67 [00:00<?, ?it/s]"
# Variables MedLens sets in-process to quieten libraries: never inherited by the child.
_OURS = ("MEDLENS_VERBOSE", "HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY",
         "TRANSFORMERS_NO_ADVISORY_WARNINGS")  # fmt: skip


def _medlens(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in _OURS}
    cmd = [sys.executable, "-m", "medlens.cli.main", *args]
    return subprocess.run(cmd, env={**full, **(env or {})}, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def noise_in(text: str) -> list[str]:
    """The third-party noise found in a command's stderr or a server log."""
    found = [s for s in ("[transformers]", "Loading weights", "Warning") if s in text]
    return found + (["tqdm bar"] if _TQDM.search(text) else [])


@pytest.fixture(scope="module")
def image(nih_images: list[Path]) -> Path:
    if not nih_images:
        pytest.skip("no NIH sample images")
    return nih_images[0]


def test_noise_detector_sees_real_transformers_output():
    sample = ("Loading weights:   0%|          | 0/88 [00:00<?, ?it/s]\n"
              "[transformers] Model config: bos_token_id must be `None`\n"
              "/x.py:3: FutureWarning: deprecated\n")  # fmt: skip
    assert noise_in(sample) == ["[transformers]", "Loading weights", "Warning", "tqdm bar"]
    assert noise_in("· read 1 image(s)\nwarning: no finding scores\n") == []


def test_interpret_default_stderr_is_quiet(tiny_test_models, image):
    proc = _medlens("interpret", str(image), "--generator", GENERATOR, "--max-new-tokens", "8",
                    "--similar", "0")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert noise_in(proc.stderr) == [], proc.stderr
    assert "models ready" in proc.stderr  # MedLens' own progress still shows
    # The clean final block: the draft report, then the disclaimer last.
    assert "Draft report" in proc.stdout
    assert proc.stdout.rstrip().splitlines()[-1].startswith("Not a medical device.")


def test_classify_default_stderr_is_quiet(tiny_test_models, image):
    proc = _medlens("classify", str(image), "--encoder", ENCODER)
    assert proc.returncode == 0, proc.stderr
    assert noise_in(proc.stderr) == [], proc.stderr
    assert "Not a medical device" in proc.stdout


def test_verbose_flag_and_env_keep_third_party_output(tiny_test_models, image):
    """The same runs with --verbose / MEDLENS_VERBOSE=1 do show it: the quiet default is
    MedLens' doing, not an accident of the test models."""
    flag = _medlens("classify", str(image), "--encoder", ENCODER, "--verbose")
    assert flag.returncode == 0, flag.stderr
    assert "Loading weights" in flag.stderr and "[transformers]" in flag.stderr
    env = _medlens("classify", str(image), "--encoder", ENCODER, env={"MEDLENS_VERBOSE": "1"})
    assert "Loading weights" in env.stderr


def test_old_flag_names_still_work_hidden(tiny_test_models, image):
    proc = _medlens("classify", str(image), "--model", ENCODER, "--json")
    assert proc.returncode == 0, proc.stderr
    assert f'"encoder": "{ENCODER}"' in proc.stdout  # hidden in --help: see below


def test_interpret_old_model_flag_and_conflict(tiny_test_models, image):
    proc = _medlens("interpret", str(image), "--model", GENERATOR, "--max-new-tokens", "4",
                    "--similar", "0", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f'"model_id": "{GENERATOR}"' in proc.stdout
    clash = _medlens("interpret", str(image), "--model", GENERATOR, "--generator", "other/x")
    assert clash.returncode == 2
    assert "give only --generator" in clash.stderr and "Traceback" not in clash.stderr


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        (["interpret"], "--generator"),
        (["ground"], "--generator"),
        (["summarize"], "--generator"),
        (["classify"], "--encoder"),
        (["classify-eval"], "--encoder"),
        (["library", "add"], "--encoder"),
        (["library", "search"], "--encoder"),
        (["library", "embed"], "--encoder"),
    ],
)
def test_one_flag_name_per_concept_in_help(command: list[str], flag: str):
    """--generator / --encoder are the names shown; the old --model is accepted but hidden."""
    from typer.testing import CliRunner

    from medlens.cli.main import app

    res = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert flag in res.output and "--model" not in res.output


@pytest.mark.parametrize("command", [["summarize", "notes.txt"], ["library", "embed"]])
def test_old_and_new_flag_naming_different_models_is_one_line_error(command: list[str]):
    from typer.testing import CliRunner

    from medlens.cli.main import app

    new = "--generator" if command[0] == "summarize" else "--encoder"
    res = CliRunner().invoke(app, [*command, "--model", "a/b", new, "c/d"])
    assert res.exit_code != 0
    # summarize prints the one-line error itself; library's ConfigError reaches main(),
    # which prints it as one line (CliRunner skips main(), so it shows as the exception).
    assert f"give only {new}" in res.output + str(res.exception)
    assert "Traceback" not in res.output


def test_quiet_third_party_in_process(monkeypatch):
    from transformers.utils import logging as tf_logging

    from medlens.models import quiet

    monkeypatch.setenv("MEDLENS_VERBOSE", "1")
    tf_logging.set_verbosity_warning()
    assert quiet.quiet_third_party() is False
    assert tf_logging.get_verbosity() == tf_logging.WARNING  # verbose: left alone
    monkeypatch.delenv("MEDLENS_VERBOSE")
    monkeypatch.delenv("TRANSFORMERS_VERBOSITY", raising=False)
    assert quiet.quiet_third_party() is True
    assert tf_logging.get_verbosity() == tf_logging.ERROR
    assert not tf_logging.is_progress_bar_enabled()
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "info")  # the user's explicit choice wins
    tf_logging.set_verbosity_info()
    quiet.quiet_third_party()
    assert tf_logging.get_verbosity() == tf_logging.INFO
    tf_logging.set_verbosity_error()

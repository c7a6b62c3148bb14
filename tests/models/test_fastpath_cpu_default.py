"""The CPU default path (fastpath/cpu_default.py): int8 for real checkpoints on a CPU,
nothing for test models, GPUs or a record that names its own format; said in words."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from medlens.models.fastpath.cpu_default import describe, options_for
from medlens.models.registry import ModelRecord


def _rec(source: str = "hf:google/medgemma-4b-it", **kw) -> ModelRecord:  # type: ignore[no-untyped-def]
    return ModelRecord(id="m", kind="generator", source=source, **kw)


def test_real_checkpoint_on_cpu_takes_int8(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("MEDLENS_QUANTIZE", raising=False)
    assert options_for(_rec(), "cpu")["quantize"] == "int8"
    path = describe(_rec(), "cpu")
    assert path.weights == "int8" and "quality guard" in path.why
    assert "MEDLENS_QUANTIZE=none" in path.switch


@pytest.mark.parametrize(
    ("record", "device"),
    [
        (_rec(is_test=True), "cpu"),  # test models keep their numerics
        (_rec(), "cuda"),  # GPUs run bf16
        (_rec(options={"quantize": "none"}), "cpu"),  # the record decides
    ],
)
def test_default_does_not_apply(record, device, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("MEDLENS_QUANTIZE", raising=False)
    assert options_for(record, device).get("quantize", "none") == (
        record.options.get("quantize", "none") if record.options else "none")


def test_environment_wins_and_is_named(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MEDLENS_QUANTIZE", "none")
    path = describe(_rec(), "cpu")
    assert path.weights == "bf16 (as published)" and "MEDLENS_QUANTIZE=none" in path.why


def test_gguf_models_say_llamacpp() -> None:
    assert describe(_rec("gguf:/m/medgemma-Q4_K_M.gguf"), "cpu").engine == "llama.cpp (GGUF)"


def test_models_info_says_which_path_and_how_to_switch(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from medlens.cli.main import app

    monkeypatch.delenv("MEDLENS_QUANTIZE", raising=False)
    out = CliRunner().invoke(app, ["models", "info", "google/medgemma-4b-it"]).output
    assert "CPU path" in out and "int8 weights" in out and "MEDLENS_QUANTIZE=none" in out

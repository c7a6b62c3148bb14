"""`medlens gate` on the real Gemma 3 270M: bf16 base vs the fast path's int8 (and int4)
weights, on a MedQA slice, both through the registry and the model session.

The paired figures in the report are re-derived here from the two run folders the gate
wrote (one per model, same items, prompt and scoring).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medlens.cli.main import app
from medlens.evaluation.gate_stats import load_predictions

pytest.importorskip("torch")
runner = CliRunner()
BASE = "medlens/gemma3-270m"


def _gate(tmp_path: Path, quant: str, limit: int, *extra: str) -> tuple[str, dict, Path]:
    work, out = tmp_path / "runs", tmp_path / f"{quant}.json"
    args = ["gate", BASE, f"{BASE}@{quant}", "--limit", str(limit), "--dtype", "bfloat16"]
    args += ["--work-dir", str(work), "-o", str(out), "--quiet", *extra]
    res = runner.invoke(app, args)
    assert res.exit_code in (0, 1), res.output
    data = json.loads(out.read_text())
    assert res.exit_code == (0 if data["passed"] else 1)
    return res.output, data, work / "medqa-general"


def _check_paired(data: dict, runs: Path, quant: str, n: int) -> None:
    base, _ = load_predictions(runs / "medlens_gemma3-270m")
    cand, meta = load_predictions(runs / f"medlens_gemma3-270m@{quant}")
    assert sorted(base) == sorted(cand) and len(base) == n
    assert meta["scoring"] == "loglik" and meta["backend"]["backend"] == "transformers"
    row = data["qa"][0]
    r2w = sum(base[i] and not cand[i] for i in base)
    w2r = sum(cand[i] and not base[i] for i in base)
    assert (row["n"], row["right_to_wrong"], row["wrong_to_right"]) == (n, r2w, w2r)
    assert row["accuracy_base"]["k"] == sum(base.values())
    assert row["accuracy_candidate"]["k"] == sum(cand.values())
    assert row["mcnemar"]["method"] == "exact-binomial"


def test_gate_270m_bf16_vs_int8_prints_the_paired_report(tmp_path, test_models) -> None:
    output, data, runs = _gate(tmp_path, "int8", 5, "--kl-n", "2", "--kl-max-tokens", "64")
    assert "# Quality gate: medlens/gemma3-270m@int8 vs medlens/gemma3-270m (quantization)" in (
        output
    )
    assert "McNemar exact p" in output and "right->wrong" in output and "top-1 agreement" in output
    _check_paired(data, runs, "int8", 5)
    kl = data["kl"]
    assert kl["method"] == "exact" and kl["n_texts"] == 2 and kl["n_tokens"] > 50
    # Same weights, int8-rounded: close but not identical distributions.
    assert 0 < kl["mean"] < 0.1 and kl["top1_agreement"] >= 0.85
    assert data["meta"]["candidate_options"]["quantize"] == "int8"
    assert data["meta"]["candidate_backend"]["weights_hash"]


@pytest.mark.slow
def test_gate_270m_bf16_vs_int4_on_20_items(tmp_path, test_models) -> None:
    _, data8, runs = _gate(tmp_path, "int8", 20, "--kl-n", "4")
    _, data4, _ = _gate(tmp_path, "int4", 20, "--kl-n", "4")
    _check_paired(data4, runs, "int4", 20)
    # int4 moves the distributions further than int8 does.
    assert data4["kl"]["mean"] > data8["kl"]["mean"] > 0

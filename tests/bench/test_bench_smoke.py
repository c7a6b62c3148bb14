"""CI smoke run of the benchmark harness (small shapes; checks structure, never timings)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
REPO = Path(__file__).resolve().parents[2]
HAS_LLAMA = importlib.util.find_spec("llama_cpp") is not None


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory, test_models) -> tuple[dict, str]:  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("bench")
    env = dict(os.environ)
    # Cached quick models live beside the session's data, not in the repo's .cache.
    env["MEDLENS_BENCH_MODELS"] = str(out / "models")
    cmd = [sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--out", str(out),
           "--runs", "3", "--only", "medgemma", "medsiglip", "quality",
           "--quality-prompts", "2", "--quality-tokens", "4"]
    if HAS_LLAMA:  # the llama.cpp row: the quick checkpoint converted to GGUF Q4_K_M
        cmd += ["--gguf", "q4_k_m"]
    subprocess.run(cmd, cwd=REPO, env=env, check=True, timeout=900)
    return json.loads((out / "cpu-quick.json").read_text()), (out / "cpu-quick.md").read_text()


def test_every_stage_has_baseline_and_ours(quick_run) -> None:  # type: ignore[no-untyped-def]
    report, _ = quick_run
    gemma = report["results"]["medgemma"]
    for variant in ("baseline", "ours"):
        med = gemma[variant]["median"]
        for key in ("ingest_preprocess_s", "vision_s", "prefill_s", "ttft_s",
                    "decode_tokens_per_s", "end_to_end_s", "followup_ttft_s", "peak_rss_mb"):
            assert med[key] is not None and med[key] > 0, (variant, key)
        assert len(gemma[variant]["runs"]) == 3
        pct = gemma[variant]["limit"]["percent"]
        assert all(pct[k] is not None and pct[k] > 0 for k in pct), pct
    ours = gemma["ours"]
    assert ours["load"]["fastpath"]["quantize"] == "int8"
    assert ours["load"]["decoder_weight_bytes"] < gemma["baseline"]["load"]["decoder_weight_bytes"]
    # A follow-up question reuses the cached image encoding.
    assert all(r["followup_images_encoded"] == 0 for r in ours["runs"])
    assert all(r["new_tokens"] == report["settings"]["new_tokens"] for r in ours["runs"])
    siglip = report["results"]["medsiglip"]
    for variant in ("baseline", "ours"):
        for batch in ("1", "8"):
            assert siglip[variant]["batches"][batch]["median"]["images_per_s"] > 0
    assert {"read_bandwidth_gbs", "bf16_matmul_gflops", "cpu", "torch"} <= set(report["machine"])


def test_markdown_table_shows_both_side_by_side(quick_run) -> None:  # type: ignore[no-untyped-def]
    _, md = quick_run
    assert "| stage | baseline (plain transformers, bf16) | % of limit | ours (MedLens, int8)" in md
    for label in ("vision encode", "prefill", "time to first token", "decode",
                  "end-to-end study", "peak RSS", "follow-up"):
        assert label in md
    assert "## MedSigLIP" in md and "## Quality guard" in md and "read bandwidth" in md


def test_quality_guard_reports_int8_and_int4(quick_run) -> None:  # type: ignore[no-untyped-def]
    report, _ = quick_run
    modes = report["results"]["quality"]["modes"]
    assert set(modes) == {"float32", "int8", "int4"}
    for q in modes.values():
        assert 0.0 <= q["greedy_agreement"] <= 1.0 and 0.0 <= q["top1_agreement"] <= 1.0


@pytest.mark.skipif(not HAS_LLAMA, reason="llama-cpp-python not installed")
def test_llamacpp_row_runs_the_same_study(quick_run) -> None:  # type: ignore[no-untyped-def]
    report, md = quick_run
    gemma = report["results"]["medgemma"]
    row = gemma["gguf-q4_k_m"]
    med = row["median"]
    for key in ("vision_prefill_s", "ttft_s", "decode_tokens_per_s", "end_to_end_s",
                "followup_ttft_s", "peak_rss_mb"):
        assert med[key] is not None and med[key] > 0, key
    assert med["vision_s"] is None and med["prefill_s"] is None  # llama.cpp can't split them
    assert all(r["new_tokens"] == report["settings"]["new_tokens"] for r in row["runs"])
    assert row["load"]["engine"] == "llama.cpp" and row["weights"] == "Q4_K_M"
    assert "gguf-q4_k_m (MedLens on llama.cpp, Q4_K_M)" in md and "cannot separate" in md
    # int8 image features stay close to bf16 (random weights, same pixels).
    assert gemma["ours"]["image_feature_cosine"]["min"] >= 0.99
    assert report["results"]["medsiglip"]["ours"]["image_feature_cosine"]["min"] >= 0.99

"""Quality guard on the real Gemma 3 270M: quantized decoders agree with the bf16 weights.

The same figures at full length are a benchmark output (benchmarks/run.py --only quality);
this is a shorter version with thresholds that catch a broken quantizer, not noise.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


@pytest.fixture(scope="module")
def guard(test_models):  # type: ignore[no-untyped-def]
    import quality

    return quality.guard_270m(modes=("float32", "int8", "int4"), n_prompts=8, n_new=16)


def test_int8_follows_the_bf16_model(guard) -> None:  # type: ignore[no-untyped-def]
    int8, floor = guard["modes"]["int8"], guard["modes"]["float32"]
    # Teacher forced: int8 picks the same next token almost everywhere (bf16 vs fp32 of the
    # same weights itself differs on ~2 % of positions of this small model: near-ties).
    assert int8["top1_agreement"] >= 0.93, int8
    assert int8["top1_agreement"] >= floor["top1_agreement"] - 0.05, (int8, floor)
    assert int8["mean_common_prefix"] >= 5, int8


def test_int4_is_reported_and_no_better_than_int8(guard) -> None:  # type: ignore[no-untyped-def]
    int4, int8 = guard["modes"]["int4"], guard["modes"]["int8"]
    # Broken packing would give ~0 agreement; int4 trades accuracy for bytes.
    assert int4["top1_agreement"] >= 0.5, int4
    assert int4["max_abs_logit_diff"] >= int8["max_abs_logit_diff"] * 0.5

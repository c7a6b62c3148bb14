"""The gate's decisions, model specs, KL texts and the fixed-prediction gate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medlens.config import load_settings
from medlens.errors import ConfigError, DataError
from medlens.evaluation import gate as g
from medlens.evaluation.gate_config import load_thresholds
from medlens.evaluation.gate_stats import paired_qa

DATA = Path(__file__).parent / "data" / "gate"
TH = load_thresholds()


def _row(base_right: int, cand_right: int, r2w: int, w2r: int, n: int = 100, role="general"):
    """A paired row with the given flips (both-right fills up to the accuracies)."""
    both = base_right - r2w
    assert both == cand_right - w2r and both >= 0
    base = {f"q{i}": i < base_right for i in range(n)}
    cand = {f"q{i}": (i < both) or (base_right <= i < base_right + w2r) for i in range(n)}
    return {**paired_qa("medqa", base, cand, n_boot=200).to_dict(), "role": role}


def _failed(checks) -> set[str]:  # type: ignore[no-untyped-def]
    return {c.name for c in checks if not c.passed}


def test_quantization_passes_a_small_balanced_change_and_fails_a_drop() -> None:
    ok, _ = g.decide("quantization", [_row(60, 59, 3, 2)], None, TH)
    assert _failed(ok) == set()
    bad, _ = g.decide("quantization", [_row(60, 50, 12, 2)], None, TH)
    assert _failed(bad) == {"medqa: accuracy drop", "medqa: McNemar p if behind"}
    churn, _ = g.decide("quantization", [_row(60, 60, 11, 11)], None, TH)
    assert _failed(churn) == {"medqa: flip rate"}  # accuracy unchanged, 22 % of answers flip
    gain, _ = g.decide("quantization", [_row(50, 62, 0, 12)], None, TH)
    assert _failed(gain) == set()  # a significant gain is not a failure


def test_quantization_kl_checks() -> None:
    kl = {"mean": 0.2, "p99": 0.5, "top1_agreement": 0.9, "ln_ppl_ratio": -0.01, "top_k": 20}
    checks, notes = g.decide("quantization", [], kl, TH)
    assert _failed(checks) == {"KL mean (nats)"}
    assert any("top-20" in n for n in notes)


def test_finetune_checks_regression_and_target_gain() -> None:
    general = _row(60, 59, 2, 1)
    target = _row(30, 50, 2, 22, role="target")
    checks, notes = g.decide("finetune", [general, target], None, TH)
    assert _failed(checks) == set() and not notes
    worse = _row(60, 55, 6, 1)
    flat = _row(30, 31, 5, 6, role="target")
    checks, _ = g.decide("finetune", [worse, flat], None, TH)
    assert _failed(checks) == {"medqa: general QA drop", "medqa: target gain McNemar p"}
    _, notes = g.decide("finetune", [general], None, TH)
    assert "No target task" in notes[0]
    with pytest.raises(ConfigError, match="Nothing to check"):
        g.decide("finetune", [], None, TH)


def test_specs_name_quantized_variants_of_a_record() -> None:
    assert g.parse_spec("medlens/gemma3-270m@int8") == ("medlens/gemma3-270m", "int8")
    assert g.parse_spec("/models/a@b") == ("/models/a@b", None)
    settings = load_settings()
    base = g.gate_record("medlens/gemma3-270m", settings)
    cand = g.gate_record("medlens/gemma3-270m@int4", settings)
    assert cand.id == "medlens/gemma3-270m@int4" and cand.options["quantize"] == "int4"
    assert cand.source == base.source and not g.is_quantized(base) and g.is_quantized(cand)
    assert g.resolve_kind("auto", base, cand) == "quantization"
    assert g.resolve_kind("auto", base, g.gate_record("medlens/test-medgemma", settings)) == (
        "finetune"
    )


def test_kl_text_sets(tmp_path, shared_data) -> None:
    txt = tmp_path / "t.txt"
    txt.write_text("first paragraph\nstill first\n\nsecond\n\n\nthird\n")
    assert g.kl_text_set(txt, 2)[0] == ["first paragraph\nstill first", "second"]
    jl = tmp_path / "t.jsonl"
    jl.write_text('{"text": "a"}\n\n{"text": "b"}\n')
    assert g.kl_text_set(jl, 5)[0] == ["a", "b"]
    texts, source = g.kl_text_set(None, 3)
    assert len(texts) == 3 and "\nA. " in texts[0] and "medqa" in source
    with pytest.raises(DataError, match="not found"):
        g.kl_text_set(tmp_path / "none.txt", 2)


def test_gate_from_predictions_and_metadata_mismatch(tmp_path) -> None:
    rep = g.gate_from_predictions(DATA / "base.jsonl", DATA / "candidate.jsonl", TH)
    assert not rep.passed and rep.qa[0]["right_to_wrong"] == 6
    # Run folders that scored different prompts are flagged, not silently compared.
    for name, sha in (("a", "1"), ("b", "2")):
        run = tmp_path / name
        run.mkdir()
        (run / "records.jsonl").write_text((DATA / "base.jsonl").read_text())
        (run / "run.json").write_text(json.dumps({"task": "medqa", "prompt_sha256": sha}))
    same = g.gate_from_predictions(tmp_path / "a", tmp_path / "b", TH)
    assert same.passed and same.qa[0]["suite"] == "medqa"
    assert any("prompt_sha256" in n for n in same.notes)

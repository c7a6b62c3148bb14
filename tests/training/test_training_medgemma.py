"""`medlens finetune medgemma` on the tiny test model: overfit, save/reload, merge, serve."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from medlens.training.medgemma import DataOptions, finetune_medgemma
from medlens.training.sft import TrainOptions

BASE = "medlens/test-medgemma"
# Overfit settings for the tiny random model: its embeddings are random, so LoRA alone
# moves the loss slowly; training them (as pitfall 4 allows when needed) overfits 4 pairs
# in 30 steps. The real-text slow test trains LoRA only.
TINY = {
    "steps": 30,
    "lr": 5e-3,
    "batch": 4,
    "grad_accum": 1,
    "rank": 16,
    "alpha": 32,
    "dropout": 0.0,
    "train_embeddings": True,
    "device": "cpu",
}


def _train(fmt: str, data_files: dict, out: Path, settings, resume=False, **over):  # type: ignore[no-untyped-def]
    opts = TrainOptions(**{**TINY, **over})
    split = None if fmt == "text" else "patientid"
    return finetune_medgemma(
        BASE,
        DataOptions(data_files[fmt], fmt, split_by=split),
        out,
        settings,
        opts,
        adapter_id=f"test/adapter-{fmt}",
        resume=resume,
    )


@pytest.fixture(scope="module")
def trained(data_files, settings, tmp_path_factory):  # type: ignore[no-untyped-def]
    return _train("pairs-csv", data_files, tmp_path_factory.mktemp("ft") / "out", settings)


def test_pairs_csv_halves_the_answer_only_loss(trained) -> None:  # type: ignore[no-untyped-def]
    assert trained.steps == TINY["steps"]
    assert trained.loss_after <= 0.5 * trained.loss_before, trained
    # The saved adapter, reloaded in fp32, scores what the trainer's model scored.
    assert trained.loss_after == pytest.approx(trained.loss_in_memory, abs=1e-4)


def test_outputs_log_manifest_and_registry_entry(trained) -> None:  # type: ignore[no-untyped-def]
    out = trained.output
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert (out / "adapter" / "processor_config.json").is_file()
    log = json.loads((out / "training_log.json").read_text())
    losses = [h["loss"] for h in log["log_history"] if "loss" in h]
    assert len(losses) == TINY["steps"] and log["seconds"] > 0
    assert log["memory"]["peak_rss_mb"] > 0
    manifest = json.loads((out / "data_manifest.json").read_text())
    assert manifest["split_by"] == "patientid" and len(manifest["train_groups"]) == 4
    assert len(manifest["images"]) == 4 and all(len(h) == 64 for h in manifest["images"].values())
    assert sum(manifest["licences"].values()) == 4
    entry = json.loads((out / "registry_entry.json").read_text())
    info = entry["options"]["adapter"]
    assert entry["kind"] == "adapter" and info["base"] == BASE
    assert info["base_weights_hash"].startswith("sha256:") and info["base_revision"] == "local"
    assert info["rank"] == 16 and info["embeddings_trained"] is True
    assert info["target"] == "language" and info["licences"] == manifest["licences"]
    import tomllib

    assert tomllib.loads((out / "registry_entry.toml").read_text())["models"][0] == entry


def _logits(model, batch):  # type: ignore[no-untyped-def]
    import torch

    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


@pytest.fixture(scope="module")
def batch_and_base(trained, settings, data_files):  # type: ignore[no-untyped-def]
    from transformers import AutoProcessor

    from medlens.models.loader import local_weights
    from medlens.models.registry import load_registry
    from medlens.training.collate import Collator
    from medlens.training.data import load_examples

    record = load_registry(settings).get(BASE)
    base_path = local_weights(record, settings)
    examples = load_examples(data_files["pairs-csv"], "pairs-csv")
    col = Collator(
        AutoProcessor.from_pretrained(base_path), examples, record.prompt_format, record.preprocess
    )
    return col([{"idx": i} for i in range(4)]), base_path


def test_adapter_reload_gives_identical_logits(trained, batch_and_base) -> None:  # type: ignore[no-untyped-def]
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    batch, base_path = batch_and_base
    a = PeftModel.from_pretrained(
        AutoModelForImageTextToText.from_pretrained(base_path, dtype=torch.float32),
        str(trained.adapter_dir),
    ).eval()
    b = AutoModelForImageTextToText.from_pretrained(trained.adapter_dir, dtype=torch.float32).eval()
    base = AutoModelForImageTextToText.from_pretrained(base_path, dtype=torch.float32).eval()
    la, lb = _logits(a, batch), _logits(b, batch)
    assert float((la - lb).abs().max()) == 0.0
    assert float((la - _logits(base, batch)).abs().max()) > 1e-2  # the adapter does something


def test_merge_matches_and_the_merged_model_generates(
    trained, batch_and_base, settings, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from medlens.models.protocols import ChatMessage, GenerationConfig, collect
    from medlens.models.session import ModelSession
    from medlens.training.entries import merge_adapter

    batch, base_path = batch_and_base
    merged_dir = merge_adapter(trained.adapter_dir, base_path, tmp_path / "merged")
    peft_model = PeftModel.from_pretrained(
        AutoModelForImageTextToText.from_pretrained(base_path, dtype=torch.float32),
        str(trained.adapter_dir),
    ).eval()
    merged = AutoModelForImageTextToText.from_pretrained(merged_dir, dtype=torch.float32).eval()
    diff = float((_logits(peft_model, batch) - _logits(merged, batch)).abs().max())
    assert diff < 1e-4, diff
    gen = ModelSession().generator(str(merged_dir), settings)
    assert gen.info.is_test  # merged test weights stay labelled as a test model
    text, stats = collect(
        gen, [ChatMessage.text("user", "Findings?")], GenerationConfig(max_new_tokens=8)
    )
    assert stats.output_tokens > 0 and isinstance(text, str)


@pytest.mark.parametrize("fmt", ["messages-jsonl", "prompt-completion-jsonl", "text"])
def test_every_format_halves_the_answer_only_loss(fmt, data_files, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    res = _train(fmt, data_files, tmp_path / "out", settings)
    assert res.loss_after <= 0.5 * res.loss_before, (fmt, res.loss_before, res.loss_after)


def test_qlora_trains_on_the_cpu(data_files, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    res = _train(
        "pairs-csv",
        data_files,
        tmp_path / "out",
        settings,
        method="qlora",
        steps=4,
        train_embeddings=False,
    )
    entry = res.entry["options"]["adapter"]
    assert entry["method"] == "qlora" and res.steps == 4
    log = json.loads((res.output / "training_log.json").read_text())
    assert log["linear4bit_modules"] > 0  # the decoder linears really ran in NF4
    assert res.loss_after < res.loss_before


def test_refuses_a_non_empty_output_and_bad_options(trained, data_files, settings) -> None:  # type: ignore[no-untyped-def]
    from medlens.errors import ConfigError

    with pytest.raises(ConfigError, match="not empty"):
        _train("pairs-csv", data_files, trained.output, settings)
    with pytest.raises(ConfigError, match="--method"):
        TrainOptions(method="full").check()  # type: ignore[arg-type]
    assert replace(TrainOptions(), rank=4).rank == 4


def test_registry_entry_serves_switches_and_unloads(trained, batch_and_base, settings) -> None:  # type: ignore[no-untyped-def]
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from medlens.config import load_settings
    from medlens.models.session import ModelSession

    batch, base_path = batch_and_base
    served = load_settings(models=[trained.entry])
    session = ModelSession()
    gen = session.generator("test/adapter-pairs-csv", served)
    # Output of an adapter on a test model is test output, and provenance names both parts.
    assert gen.info.is_test and gen.info.model_id == "test/adapter-pairs-csv"
    assert "+lora:" in gen.info.weights_hash
    peft_model = PeftModel.from_pretrained(
        AutoModelForImageTextToText.from_pretrained(base_path, dtype=torch.float32),
        str(trained.adapter_dir),
    ).eval()
    want = _logits(peft_model, batch)
    assert float((_logits(gen.model, batch) - want).abs().max()) < 1e-4
    base = session.generator(BASE, served)  # switch: the base is its own entry
    assert float((_logits(base.model, batch) - want).abs().max()) > 1e-2
    assert session.unload("test/adapter-pairs-csv") == 1
    assert [m.id for m in session.status()] == [BASE]


def test_resume_continues_from_the_last_checkpoint(data_files, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    _train("text", data_files, out, settings, steps=2)
    assert (out / "checkpoints" / "checkpoint-2").is_dir()
    res = _train("text", data_files, out, settings, resume=True, steps=4)
    log = json.loads((out / "training_log.json").read_text())
    steps = [h["step"] for h in log["log_history"] if "loss" in h]
    # Steps 1-2 come back with the checkpoint's state; only 3-4 ran again.
    assert res.steps == 4 and steps == [1, 2, 3, 4]

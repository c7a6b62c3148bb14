"""`medlens finetune medgemma`: LoRA / QLoRA SFT of a MedGemma (Gemma 3) base.

Output folder: `adapter/` (peft adapter + processor), `training_log.json` (loss per step,
time, peak memory, answer-only loss before/after), `data_manifest.json` and
`registry_entry.json` / `.toml` (a registry record of kind "adapter").
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from medlens.errors import ConfigError
from medlens.training.collate import Collator
from medlens.training.data import build_manifest, load_examples, split_groups
from medlens.training.entries import adapter_entry, write_entry
from medlens.training.sft import (
    TrainOptions,
    answer_loss,
    load_base,
    lora_config,
    peak_memory,
    pick_device,
    sft_config,
)


@dataclass(frozen=True)
class DataOptions:
    path: Path
    format: str = "pairs-csv"
    image_column: str = "image_file"
    text_column: str = "clinical_notes"
    prompt: str | None = None
    split_by: str | None = None
    eval_fraction: float = 0.0


@dataclass
class FinetuneResult:
    output: Path
    adapter_dir: Path
    loss_before: float
    loss_after: float  # the saved adapter reloaded (pitfall 7)
    loss_in_memory: float  # the trainer's model before saving
    eval_loss_before: float | None
    eval_loss_after: float | None
    steps: int
    seconds: float
    memory: dict[str, float]
    entry: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["output"], out["adapter_dir"] = str(self.output), str(self.adapter_dir)
        return out


def finetune_medgemma(
    base: str,
    data: DataOptions,
    output: Path,
    settings: Any,
    opts: TrainOptions = TrainOptions(),
    *,
    resume: bool = False,
    adapter_id: str | None = None,
) -> FinetuneResult:
    """Train an adapter on `data` over the registry id / path `base`; writes `output`."""
    opts.check()
    output = Path(output).expanduser()
    if output.exists() and any(output.iterdir()) and not resume:
        raise ConfigError(f"{output} is not empty; use --resume to continue or a new folder.")
    record, base_path = _resolve_base(base, settings)
    train, held = _load_split(data, opts)
    run = _prepare(record, base_path, train, held, opts)
    output.mkdir(parents=True, exist_ok=True)
    trainer, seconds, in_memory, adapter_dir = _train(run, opts, output, resume)
    # Judge the saved artefact, not the in-memory model (pitfall 7).
    trained = _reload(base_path, adapter_dir, opts, run.device)
    after = answer_loss(trained, run.collator, len(train))
    eval_after = _held_loss(trained, run.collator, run.held_idx)
    memory = peak_memory()
    manifest = build_manifest(data.path, data.format, data.split_by, train, held)
    (output / "data_manifest.json").write_text(json.dumps(manifest.to_dict(), indent=2), "utf-8")
    log = {
        "base": record.id,
        "options": asdict(opts),
        "device": run.device,
        "seconds": round(seconds, 2),
        "steps": trainer.state.global_step,
        "answer_loss_before": run.before,
        "answer_loss_after": after,
        "answer_loss_in_memory": in_memory,  # before saving; `after` is the saved adapter
        "eval_answer_loss_before": run.eval_before,
        "eval_answer_loss_after": eval_after,
        "memory": memory,
        "linear4bit_modules": _count_4bit(trained),  # > 0: the base really ran in NF4
        "log_history": trainer.state.log_history,
    }
    (output / "training_log.json").write_text(json.dumps(log, indent=2), "utf-8")
    entry = _write_registry_entry(
        adapter_id, output, record, adapter_dir, opts, manifest, base_path, settings, trained
    )
    return FinetuneResult(
        output,
        adapter_dir,
        run.before,
        after,
        in_memory,
        run.eval_before,
        eval_after,
        trainer.state.global_step,
        seconds,
        memory,
        entry,
    )


@dataclass
class _Prepared:
    """The loaded base, its collator over train + held-out rows, and pre-training losses."""

    device: str
    model: Any
    processor: Any
    collator: Collator
    n_train: int
    held_idx: list[int]
    before: float
    eval_before: float | None


def _resolve_base(base: str, settings: Any) -> tuple[Any, Path]:
    """The registry record of the base generator and its local weights folder."""
    from medlens.models.loader import local_weights
    from medlens.models.registry import load_registry

    record = load_registry(settings).resolve(base, kind="generator")
    if record.kind == "adapter":
        raise ConfigError("Train on a base model, not on another adapter (merge it first).")
    return record, local_weights(record, settings)


def _load_split(data: DataOptions, opts: TrainOptions) -> tuple[list[Any], list[Any]]:
    """Load the examples and split them into train / held-out groups."""
    examples = load_examples(
        data.path,
        data.format,
        image_column=data.image_column,
        text_column=data.text_column,
        split_by=data.split_by,
        **({"prompt": data.prompt} if data.prompt else {}),
    )
    return split_groups(examples, data.eval_fraction, opts.seed)


def _prepare(
    record: Any, base_path: Path, train: list[Any], held: list[Any], opts: TrainOptions
) -> _Prepared:
    """Seed, load the base model + processor, build the collator, measure losses before."""
    device = pick_device(opts.device)
    _seed(opts.seed)
    model, processor = load_base(base_path, opts, device)
    collator = Collator(
        processor, train + held, record.prompt_format, record.preprocess, max_length=opts.max_length
    )
    held_idx = list(range(len(train), len(train) + len(held)))
    before = answer_loss(model, collator, len(train))
    eval_before = _held_loss(model, collator, held_idx)
    return _Prepared(device, model, processor, collator, len(train), held_idx, before, eval_before)


def _train(
    run: _Prepared, opts: TrainOptions, output: Path, resume: bool
) -> tuple[Any, float, float, Path]:
    """Train, measure the in-memory loss, save adapter + processor to `output/adapter`."""
    trainer = _trainer(
        run.model, run.processor, run.collator, run.n_train, opts, output, run.device
    )
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume and _has_checkpoint(output))
    seconds = time.perf_counter() - start
    in_memory = answer_loss(trainer.model, run.collator, run.n_train)
    adapter_dir = output / "adapter"
    trainer.save_model(str(adapter_dir))
    run.processor.save_pretrained(str(adapter_dir))
    return trainer, seconds, in_memory, adapter_dir


def _write_registry_entry(
    adapter_id: str | None,
    output: Path,
    record: Any,
    adapter_dir: Path,
    opts: TrainOptions,
    manifest: Any,
    base_path: Path,
    settings: Any,
    trained: Any,
) -> dict[str, Any]:
    """Write `registry_entry.json` / `.toml` for the saved adapter; returns the entry."""
    from medlens.models.hub import weights_hash

    entry = adapter_entry(
        adapter_id or f"adapter/{output.name}",
        record,
        adapter_dir,
        opts,
        manifest,
        base_weights_hash=weights_hash(base_path, Path(settings.data_dir).expanduser()),
        trainable=_trainable(trained),
    )
    write_entry(entry, output)
    return entry


def _seed(seed: int) -> None:
    from transformers import set_seed

    set_seed(seed)


def _held_loss(model: Any, collator: Collator, idx: list[int]) -> float | None:
    if not idx:
        return None
    sub = Collator(
        collator.processor,
        [collator.examples[i] for i in idx],
        collator.prompt_format,
        collator.preprocess_spec,
        collator.max_length,
    )
    return answer_loss(model, sub, len(idx))


def _trainer(
    model: Any,
    processor: Any,
    collator: Collator,
    n: int,
    opts: TrainOptions,
    output: Path,
    device: str,
) -> Any:
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTTrainer

    steps_per_epoch = max(1, -(-n // (opts.batch * opts.grad_accum)))
    total = opts.steps or int(steps_per_epoch * opts.epochs)
    trainer = SFTTrainer(
        model=model,
        args=sft_config(opts, output, device, save_steps=max(1, total // 2)),
        train_dataset=Dataset.from_list([{"idx": i} for i in range(n)]),
        data_collator=collator,
        processing_class=processor,
        peft_config=lora_config(opts),
    )
    # Per-step losses go to training_log.json; stdout stays the command's JSON result.
    trainer.remove_callback(PrinterCallback)
    return trainer


def _has_checkpoint(output: Path) -> bool:
    return any((output / "checkpoints").glob("checkpoint-*"))


def _reload(base_path: Path, adapter_dir: Path, opts: TrainOptions, device: str) -> Any:
    from peft import PeftModel

    model, _ = load_base(base_path, opts, device)
    return PeftModel.from_pretrained(model, str(adapter_dir)).eval()


def _count_4bit(model: Any) -> int:
    return sum(type(m).__name__ == "Linear4bit" for m in model.modules())


def _trainable(model: Any) -> int:
    # Adapter parameters (LoRA matrices, plus saved modules when embeddings were trained).
    return sum(
        p.numel() for n, p in model.named_parameters() if "lora_" in n or "modules_to_save" in n
    )

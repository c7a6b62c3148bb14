"""Model, LoRA and trainer configuration for MedGemma SFT (Google's recipe, made explicit).

Every `SFTConfig` field that differs from `TrainingArguments` or that the recipe sets is
given here explicitly (pitfall 6: trl 1.x defaults to bf16, gradient checkpointing,
lr 2e-5 and max_length 1024, and bf16 on a CPU fails without `use_cpu=True`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from medlens.errors import ConfigError

Method = Literal["lora", "qlora"]
Target = Literal["language", "all-linear"]
# Decoder linears only: the SigLIP tower and projector stay frozen and the adapter stays
# portable (vLLM applies Gemma 3 LoRA to the language model; pitfall 5).
LANGUAGE_TARGET = (
    r"^(?!.*(?:vision_tower|multi_modal_projector)).*"
    r"\.(?:q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"
)
# Full module paths: transformers 5.x matches these against the qualified names (pitfall 8).
QLORA_SKIP = ["model.vision_tower", "model.multi_modal_projector", "lm_head"]


@dataclass(frozen=True)
class TrainOptions:
    method: Method = "lora"
    target: Target = "language"
    rank: int = 16
    alpha: int = 16
    dropout: float = 0.05
    epochs: float = 1.0
    steps: int | None = None  # overrides epochs
    lr: float = 2e-4
    batch: int = 4
    grad_accum: int = 4
    max_length: int = 1024
    train_embeddings: bool = False
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda

    def check(self) -> None:
        if self.method not in ("lora", "qlora"):
            raise ConfigError(f"--method must be lora or qlora, not {self.method!r}.")
        if self.target not in ("language", "all-linear"):
            raise ConfigError(f"--target must be language or all-linear, not {self.target!r}.")
        if self.rank < 1 or self.alpha < 1 or not 0 <= self.dropout < 1:
            raise ConfigError("--rank and --alpha must be ≥ 1 and --dropout in [0, 1).")
        if self.batch < 1 or self.grad_accum < 1 or self.lr <= 0:
            raise ConfigError("--batch and --grad-accum must be ≥ 1 and --lr positive.")


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but no CUDA GPU is visible.")
    return device


def load_base(path: Path, opts: TrainOptions, device: str) -> tuple[Any, Any]:
    """(model, processor-or-tokenizer) for training; fp32 on CPU, bf16 on a GPU."""
    import torch
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForImageTextToText,
        AutoProcessor,
        AutoTokenizer,
    )

    config = AutoConfig.from_pretrained(path)
    vlm = hasattr(config, "vision_config")
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": "eager"}
    if opts.method == "qlora":
        kwargs["quantization_config"] = qlora_config(dtype)
        kwargs["device_map"] = {"": 0} if device == "cuda" else {"": "cpu"}
    model_cls = AutoModelForImageTextToText if vlm else AutoModelForCausalLM
    model = model_cls.from_pretrained(path, **kwargs)
    if opts.method != "qlora":
        model.to(device)
    processor = (AutoProcessor if vlm else AutoTokenizer).from_pretrained(path)
    return model, processor


def qlora_config(dtype: Any) -> Any:
    """4-bit NF4 with double quantisation, as Google's notebook (compute dtype = model's)."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype,
        bnb_4bit_quant_storage=dtype,
        llm_int8_skip_modules=QLORA_SKIP,
    )


def lora_config(opts: TrainOptions) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=opts.rank,
        lora_alpha=opts.alpha,
        lora_dropout=opts.dropout,
        bias="none",
        target_modules=LANGUAGE_TARGET if opts.target == "language" else "all-linear",
        task_type="CAUSAL_LM",
        # Off by default: with tied embeddings this trains 1.38 B parameters at 4B and
        # makes the adapter non-LoRA (pitfall 4). Only when tokens were added.
        modules_to_save=["lm_head", "embed_tokens"] if opts.train_embeddings else None,
        # Keep lm_head and embed_tokens one matrix while training (peft #2777).
        ensure_weight_tying=opts.train_embeddings,
    )


def sft_config(opts: TrainOptions, output: Path, device: str, *, save_steps: int) -> Any:
    from trl import SFTConfig

    gpu = device == "cuda"
    return SFTConfig(
        output_dir=str(output / "checkpoints"),
        num_train_epochs=opts.epochs,
        max_steps=opts.steps if opts.steps else -1,
        per_device_train_batch_size=opts.batch,
        gradient_accumulation_steps=opts.grad_accum,
        learning_rate=opts.lr,
        lr_scheduler_type="linear",
        warmup_steps=0.03,  # a ratio when < 1 (transformers 5 folded warmup_ratio in)
        weight_decay=0.0,
        max_grad_norm=0.3,
        optim="adamw_torch_fused" if gpu else "adamw_torch",
        bf16=gpu,
        fp16=False,
        use_cpu=not gpu,
        gradient_checkpointing=gpu,
        gradient_checkpointing_kwargs={"use_reentrant": False} if gpu else None,
        max_length=opts.max_length,
        packing=False,
        padding_free=False,
        completion_only_loss=None,
        assistant_only_loss=False,
        dataset_kwargs={"skip_prepare_dataset": True},  # our collator does all of it
        remove_unused_columns=False,
        label_names=["labels"],
        logging_steps=1,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=1,
        eval_strategy="no",
        report_to="none",
        seed=opts.seed,
        data_seed=opts.seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )


def answer_loss(model: Any, collator: Any, n: int, batch: int = 4) -> float:
    """Mean loss over the answer tokens of examples 0..n-1 (labels from the collator)."""
    import torch

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, n, batch):
            rows = [{"idx": i} for i in range(start, min(n, start + batch))]
            inputs = collator(rows)
            inputs = {k: v.to(model.device) for k, v in inputs.items()}
            labels = inputs.pop("labels")
            logits = model(**inputs).logits.float()
            shift, target = logits[:, :-1], labels[:, 1:]
            loss = torch.nn.functional.cross_entropy(
                shift.reshape(-1, shift.shape[-1]),
                target.reshape(-1),
                reduction="sum",
                ignore_index=-100,
            )
            total += float(loss)
            count += int((target != -100).sum())
    if was_training:
        model.train()
    return total / max(count, 1)


def peak_memory() -> dict[str, float]:
    """Peak resident set (MB) of this process, and peak CUDA memory when a GPU was used."""
    import resource

    import torch

    out = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if torch.cuda.is_available():
        out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out

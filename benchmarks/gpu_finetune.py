"""GPU fine-tuning recipe: peak GPU memory and seconds per step for MedGemma 4B SFT.

Variants (issue 21, point 2), batch 4 × one 896-px image + ≈ 300 text tokens:
  a  QLoRA as Google's notebook publishes it: NF4 + double quantisation, bf16 compute,
     LoRA r16/alpha16 on all-linear, modules_to_save=[lm_head, embed_tokens]
  b  the same without modules_to_save (MedLens's default, language+vision all-linear)
  c  bf16 LoRA without quantisation (language modules only: MedLens's default target)

With `--weights DIR` a real checkpoint is used (medgemma-4b-it or 1.5-4b-it); without
weights, a randomly initialised model of the real medgemma-4b configuration (shapes from
../shared/docs/MODELS.md) is saved once under --work and loaded like a checkpoint, so the
memory and time per step are those of the real shapes (loss values are meaningless then).

Run:  python benchmarks/gpu_finetune.py --variants a,b,c --steps 6 --out results.json
Needs a CUDA GPU with bf16 and the `train` extra. Nothing here runs in the test suite.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path
from typing import Any


def medgemma_4b_config() -> Any:
    from transformers import Gemma3Config

    text = {
        "hidden_size": 2560,
        "num_hidden_layers": 34,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "head_dim": 256,
        "query_pre_attn_scalar": 256,
        "intermediate_size": 10240,
        "vocab_size": 262208,
        "sliding_window": 1024,
        "rope_theta": 1_000_000.0,
        "rope_local_base_freq": 10_000.0,
        "rope_scaling": {"rope_type": "linear", "factor": 8.0},
        "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-6,
        "hidden_activation": "gelu_pytorch_tanh",
        "layer_types": [
            "full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(34)
        ],
    }
    vision = {
        "hidden_size": 1152,
        "intermediate_size": 4304,
        "num_hidden_layers": 27,
        "num_attention_heads": 16,
        "image_size": 896,
        "patch_size": 14,
        "vision_use_head": False,
    }
    return Gemma3Config(
        text_config=text,
        vision_config=vision,
        mm_tokens_per_image=256,
        boi_token_index=255999,
        eoi_token_index=256000,
        image_token_index=262144,
    )


def random_checkpoint(work: Path) -> Path:
    import torch
    from transformers import Gemma3ForConditionalGeneration

    out = work / "medgemma-4b-random"
    if (out / "config.json").is_file():
        return out
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Gemma3ForConditionalGeneration(medgemma_4b_config()).to(torch.bfloat16)
    model.save_pretrained(out)
    del model
    gc.collect()
    torch.cuda.empty_cache()
    return out


def batch(config: Any, n: int = 4, text_tokens: int = 300) -> dict[str, Any]:
    """n sequences of BOS + image block (256 soft tokens) + text; answer-only labels."""
    import torch

    img = config.image_token_index
    seq = [2, config.boi_token_index, *[img] * 256, config.eoi_token_index]
    seq += list(range(1000, 1000 + text_tokens))
    ids = torch.tensor([seq] * n, device="cuda")
    labels = ids.clone()
    labels[:, : len(seq) - 60] = -100  # the last 60 tokens are the answer
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "token_type_ids": (ids == img).long(),
        "labels": labels,
        "pixel_values": torch.randn(n, 3, 896, 896, device="cuda", dtype=torch.bfloat16),
    }


def run_variant(name: str, path: Path, steps: int) -> dict[str, Any]:
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForImageTextToText, BitsAndBytesConfig

    kwargs: dict[str, Any] = {"dtype": torch.bfloat16, "attn_implementation": "eager"}
    if name in ("a", "b"):
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_quant_storage=torch.bfloat16,
        )
    torch.cuda.reset_peak_memory_stats()
    model = AutoModelForImageTextToText.from_pretrained(path, device_map={"": 0}, **kwargs)
    if name in ("a", "b"):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    else:
        model.gradient_checkpointing_enable({"use_reentrant": False})
    target = r".*language_model.*\.(q|k|v|o|gate|up|down)_proj$" if name == "c" else "all-linear"
    lora = LoraConfig(
        r=16,
        lora_alpha=16,
        lora_dropout=0.05,
        bias="none",
        task_type="CAUSAL_LM",
        target_modules=target,
        modules_to_save=["lm_head", "embed_tokens"] if name == "a" else None,
    )
    model = get_peft_model(model, lora)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4, fused=True)
    data = batch(model.config)
    times = []
    for _ in range(steps):
        torch.cuda.synchronize()
        t = time.perf_counter()
        loss = model(**data).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.3)
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    out = {
        "variant": name,
        "trainable_parameters": trainable,
        "seconds_per_step": sorted(times[1:])[len(times[1:]) // 2] if steps > 1 else times[0],
        "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "device": torch.cuda.get_device_name(0),
        "steps": steps,
    }
    del model, opt
    gc.collect()
    torch.cuda.empty_cache()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, help="real checkpoint folder (else random)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/medlens-gpu-finetune"))
    ap.add_argument("--variants", default="a,b,c")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--out", type=Path, default=Path("gpu_finetune.json"))
    args = ap.parse_args()
    path = args.weights or random_checkpoint(args.work)
    results = []
    for name in args.variants.split(","):
        results.append(run_variant(name.strip(), path, args.steps))
        print(json.dumps(results[-1]), flush=True)
    args.out.write_text(json.dumps({"weights": str(path), "results": results}, indent=2))


if __name__ == "__main__":
    main()

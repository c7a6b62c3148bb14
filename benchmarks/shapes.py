"""Exact model shapes for benchmarks, built from config with random weights.

Compute and memory traffic depend on shapes, not on weight values, so a random model
with MedGemma's exact configuration costs exactly what the real one costs. Models are
built on the meta device (no memory), given storage, randomly initialised in place and
their non-persistent buffers rebuilt (see medlens.models.fastpath.buffers), then cached
on disk under .cache/bench-models/<name> as safetensors + processor files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("MEDLENS_BENCH_MODELS", REPO / ".cache" / "bench-models"))
SHAPES_VERSION = 2  # bump when a config below changes (invalidates the disk cache)

MEDGEMMA_4B_PARAMS = 4_300_079_472
MEDSIGLIP_448_PARAMS = 878_300_338


@dataclass(frozen=True)
class Shape:
    name: str
    kind: str  # "medgemma" (Gemma3ForConditionalGeneration) | "medsiglip" | "gemma-text"
    params: int | None  # exact count to verify, when known
    quick: bool = False


SHAPES = {
    "medgemma-4b": Shape("medgemma-4b", "medgemma", MEDGEMMA_4B_PARAMS),
    "medsiglip-448": Shape("medsiglip-448", "medsiglip", MEDSIGLIP_448_PARAMS),
    "medgemma-quick": Shape("medgemma-quick", "medgemma", None, quick=True),
    "medsiglip-quick": Shape("medsiglip-quick", "medsiglip", None, quick=True),
    # Gemma 3 1B text shapes: the "mid-size" decoder for int8-vs-bf16 decode speed.
    "gemma3-1b": Shape("gemma3-1b", "gemma-text", None),
}


def _layer_types(n: int) -> list[str]:
    # Every 6th layer attends globally; the rest use the 1024-token sliding window.
    return ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(n)]


def _rope(factor: float | None) -> dict[str, Any]:
    full: dict[str, Any] = {"rope_type": "default", "rope_theta": 1e6}
    if factor:
        full = {"rope_type": "linear", "factor": factor, "rope_theta": 1e6}
    return {
        "full_attention": full,
        "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
    }


def text_config(name: str) -> dict[str, Any]:
    if name == "medgemma-4b":
        n, hidden, heads, kv, inter = 34, 2560, 8, 4, 10240
        extra: dict[str, Any] = {"max_position_embeddings": 131072, "rope_parameters": _rope(8.0)}
    elif name == "gemma3-1b":
        n, hidden, heads, kv, inter = 26, 1152, 4, 1, 6912
        extra = {
            "max_position_embeddings": 32768,
            "rope_parameters": _rope(None),
            "vocab_size": 262144,
            "sliding_window": 512,
        }
    else:  # quick: small but the same structure (GQA, sliding + global layers, 262k vocab)
        n, hidden, heads, kv, inter = 6, 256, 4, 2, 1024
        extra = {"max_position_embeddings": 8192, "rope_parameters": _rope(8.0)}
    cfg: dict[str, Any] = {
        "hidden_size": hidden,
        "num_hidden_layers": n,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "head_dim": 256 if name != "medgemma-quick" else 64,
        "query_pre_attn_scalar": 256 if name != "medgemma-quick" else 64,
        "intermediate_size": inter,
        "vocab_size": 262208,
        "sliding_window": 1024,
        "layer_types": _layer_types(n),
        "rms_norm_eps": 1e-6,
        "hidden_activation": "gelu_pytorch_tanh",
        "bos_token_id": 2,
        "eos_token_id": [1, 106],
        "pad_token_id": 0,
    }
    cfg.update(extra)
    return cfg


def vision_config(name: str) -> dict[str, Any]:
    if name in ("medgemma-4b", "medsiglip-448"):
        hidden, inter, n, heads = 1152, 4304, 27, 16
        image = 896 if name == "medgemma-4b" else 448
    else:
        hidden, inter, n, heads, image = 192, 768, 4, 4, 224
    return {
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": n,
        "num_attention_heads": heads,
        "image_size": image,
        "patch_size": 14,
        "layer_norm_eps": 1e-6,
    }


def build_config(name: str) -> Any:
    shape = SHAPES[name]
    if shape.kind == "medgemma":
        from transformers import Gemma3Config

        vc = vision_config(name) | {"vision_use_head": False}
        return Gemma3Config(
            text_config=text_config(name),
            vision_config=vc,
            mm_tokens_per_image=256 if not shape.quick else 64,
            boi_token_index=255999,
            eoi_token_index=256000,
            image_token_index=262144,
            tie_word_embeddings=True,
        )
    if shape.kind == "gemma-text":
        from transformers import Gemma3TextConfig

        return Gemma3TextConfig(**text_config(name), tie_word_embeddings=True)
    from transformers import SiglipConfig

    tc = {
        "vocab_size": 32000,
        "max_position_embeddings": 64,
        "pad_token_id": 1,
        "bos_token_id": 2,
        "eos_token_id": 1,
    }
    vc = vision_config("medsiglip-448" if not shape.quick else name)
    tc |= {
        k: vc[k]
        for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
    }
    return SiglipConfig(text_config=tc, vision_config=vc)


def model_class(name: str) -> Any:
    from transformers import Gemma3ForCausalLM, Gemma3ForConditionalGeneration, SiglipModel

    kind = SHAPES[name].kind
    return {
        "medgemma": Gemma3ForConditionalGeneration,
        "gemma-text": Gemma3ForCausalLM,
        "medsiglip": SiglipModel,
    }[kind]


def meta_model(name: str) -> Any:
    """The model on the meta device (no memory: for parameter counts and shapes)."""
    import torch

    with torch.device("meta"):
        return model_class(name)(build_config(name))


def count_params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())  # tied weights counted once


def build_random(name: str, dtype: str = "bfloat16", seed: int = 0) -> Any:
    """Random-weight model with the exact shapes, in `dtype`, on CPU."""
    import torch

    from medlens.models.fastpath.buffers import rebuild_nonpersistent_buffers

    tdtype = getattr(torch, dtype)
    model = meta_model(name).to(dtype=tdtype)
    model.to_empty(device="cpu")
    # to_empty() gives each module its own storage: tied head/embedding become two
    # matrices (671M extra parameters for MedGemma-4B). Tie them again.
    model.tie_weights()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if p.ndim == 1:
                # Gemma RMSNorm scales by (1 + w): zero is the identity; LayerNorm weights
                # (SigLIP) want one; biases zero.
                is_ln = (
                    pname.endswith("weight") and "layer_norm" in pname
                ) or "post_layernorm" in pname
                p.fill_(1.0 if is_ln and pname.endswith("weight") else 0.0)
            else:
                p.normal_(0.0, 0.02, generator=gen)
        if hasattr(model, "logit_scale"):
            model.logit_scale.fill_(2.3026)  # exp -> 10, as SigLIP inits
            model.logit_bias.fill_(-10.0)
    rebuild_nonpersistent_buffers(model)
    return model.eval()


def _tokenizer() -> Any:
    """The real Gemma 3 tokenizer (262k), shipped with MedLens's real-text test models."""
    from transformers import AutoTokenizer

    from medlens.config import load_settings
    from medlens.models.testmodels import ensure_test_models

    paths = ensure_test_models(load_settings())
    return AutoTokenizer.from_pretrained(paths["medgemma-realtext"])


def build_processor(name: str) -> Any:
    shape = SHAPES[name]
    vc = vision_config(name)
    if shape.kind == "medsiglip":
        from transformers import SiglipImageProcessor

        return SiglipImageProcessor(
            size={"height": vc["image_size"], "width": vc["image_size"]},
            resample=2,
            image_mean=[0.5] * 3,
            image_std=[0.5] * 3,
        )
    if shape.kind == "gemma-text":
        return _tokenizer()
    from transformers import Gemma3ImageProcessor, Gemma3Processor

    from medlens.models.chat_template import GEMMA3_CHAT_TEMPLATE

    image_processor = Gemma3ImageProcessor(
        size={"height": vc["image_size"], "width": vc["image_size"]},
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
        do_pan_and_scan=False,
    )
    return Gemma3Processor(
        image_processor=image_processor,
        tokenizer=_tokenizer(),
        chat_template=GEMMA3_CHAT_TEMPLATE,
        image_seq_length=256 if not shape.quick else 64,
    )


def cached_model_dir(name: str, dtype: str = "bfloat16") -> Path:
    """Folder holding the random model (built and saved on first use; reused after)."""
    folder = CACHE / f"{name}-{dtype}-v{SHAPES_VERSION}"
    marker = folder / "bench_model.json"
    if marker.is_file():
        return folder
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    model = build_random(name, dtype)
    model.save_pretrained(tmp)
    build_processor(name).save_pretrained(tmp)
    (tmp / "bench_model.json").write_text(
        json.dumps(
            {
                "name": name,
                "dtype": dtype,
                "params": count_params(model),
                "shapes_version": SHAPES_VERSION,
                "weights": "random normal(0, 0.02), seed 0",
            }
        )
    )
    del model
    if folder.exists():  # another process won the race
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.rename(folder)
    return folder

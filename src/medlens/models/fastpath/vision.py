"""Faster vision towers on CPU: SigLIP's attention on the compiled bf16 kernel.

The MedGemma vision tower (SigLIP, 896 px: 4096 patches, 16 heads of 72) spends 38 % of
its arithmetic in attention, and torch's CPU flash attention runs that part at a third of
the bf16 matmul rate. native/attention.c computes the same softmax(q k^T / sqrt(d)) v in
bf16 with fp32 sums at ~2x the speed (same error against a float64 reference as torch's
kernel: tests/models/test_fastpath_vision.py). MedSigLIP's image tower gets it too.

Only unmasked, non-causal, inference-time bf16 attention on CPU goes to the kernel; any
other call (a mask, dropout, fp32, another device, no AVX512-BF16) runs transformers' own
SDPA attention unchanged.

Where the CPU has AMX-BF16 (Intel Sapphire Rapids and later), torch's own kernels use
the AMX tiles and are the faster ones: on a 2-core Xeon with AMX, SDPA ran SigLIP's
attention (16 heads x 4096 x 72) in 106 ms against 471 ms for this kernel. So by default
(`MEDLENS_VISION_ATTENTION=auto`) the kernel is only used on CPUs without AMX-BF16;
`native` / `torch` force either choice.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from medlens.errors import ConfigError
from medlens.models.fastpath import native

ATTENTION_NAME = "medlens_vision_sdpa"
MAX_HEAD_DIM = 256
CHOICES = ("auto", "native", "torch")


def kernel_pays_off() -> bool:
    """Whether image towers should use the compiled kernel here (MEDLENS_VISION_ATTENTION)."""
    choice = os.environ.get("MEDLENS_VISION_ATTENTION", "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        raise ConfigError(f"MEDLENS_VISION_ATTENTION must be one of {', '.join(CHOICES)}.")
    if choice != "auto":
        return choice == "native"
    return "amx_bf16" not in native.cpu_flags()  # AMX: torch's oneDNN kernels are faster


def _kernel_applies(
    query: torch.Tensor, key: torch.Tensor, attention_mask: Any, kwargs: dict[str, Any]
) -> bool:
    return (
        attention_mask is None
        and not kwargs.get("is_causal", False)
        and not kwargs.get("dropout", 0.0)
        and not kwargs.get("output_attentions", False)
        and query.device.type == "cpu"
        and query.dtype == torch.bfloat16
        and key.dtype == torch.bfloat16
        and query.shape[-1] <= MAX_HEAD_DIM
        and query.shape[1] == key.shape[1]  # no grouped heads in vision towers
        and query.stride(-1) == 1
        and key.stride(-1) == 1
    )


def vision_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention interface: [B, H, T, D] in, ([B, T, H, D], None) out."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    kernel = (
        native.load_attention() if _kernel_applies(query, key, attention_mask, kwargs) else None
    )
    if kernel is None or value.stride(-1) != 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    scale = kwargs.get("scaling")
    if scale is None:
        scale = query.shape[-1] ** -0.5
    b, h, t, d = query.shape
    out = torch.empty((b, t, h, d), dtype=query.dtype)
    kernel.attention(query, key, value, out, float(scale), torch.get_num_threads())
    return out, None


def register_attention() -> str:
    """Register `vision_attention` (with SDPA's masks) with transformers; returns its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, vision_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION_NAME, sdpa_mask)
    return ATTENTION_NAME


def use_fast_vision_attention(tower: nn.Module) -> int:
    """Point every SDPA attention config inside a vision tower at `vision_attention`.

    Returns how many configs were switched (0 when the kernel cannot run on this machine
    or would be slower than torch's, or the tower is not on SDPA: eager / flash stay).
    """
    if not kernel_pays_off() or native.load_attention() is None:
        return 0
    name = register_attention()
    switched = 0
    seen: set[int] = set()
    for module in tower.modules():
        config = getattr(module, "config", None)
        if config is None or id(config) in seen or not type(module).__name__.endswith("Attention"):
            continue
        seen.add(id(config))
        if getattr(config, "_attn_implementation", None) == "sdpa":
            config._attn_implementation = name
            switched += 1
    return switched


def vision_tower_of(model: nn.Module) -> nn.Module | None:
    """The image tower of a Gemma 3 (MedGemma) or SigLIP (MedSigLIP) model, if any."""
    inner = getattr(model, "model", model)
    for attr in ("vision_tower", "vision_model"):
        tower = getattr(inner, attr, None)
        if isinstance(tower, nn.Module):
            return tower
    return None

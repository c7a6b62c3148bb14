"""Rebuild non-persistent buffers after building a model on the meta device.

`to_empty()` gives every tensor uninitialised storage; parameters are then filled (random
init or a checkpoint), but non-persistent buffers are in no checkpoint: Gemma 3's rotary
`*_inv_freq`, the word embedding's `embed_scale` and SigLIP's `position_ids` would stay
garbage and silently corrupt every output. Unknown non-persistent buffers raise, so a
future transformers version that adds one fails loudly instead of computing nonsense.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def _rebuild_rotary(module: nn.Module, device: torch.device) -> None:
    # A fresh instance computes inv_freq from the config (tiny: one vector per layer type).
    fresh = type(module)(module.config, device=device)
    for name, buf in fresh.named_buffers(recurse=False):
        setattr(module, name, buf.to(device))
    for key, value in vars(fresh).items():
        if key.endswith("attention_scaling"):
            setattr(module, key, value)


def rebuild_nonpersistent_buffers(model: nn.Module) -> list[str]:
    """Recompute every non-persistent buffer in place; returns the names fixed."""
    fixed: list[str] = []
    for mod_name, module in model.named_modules():
        names = [
            n
            for n, _ in module.named_buffers(recurse=False)
            if n in module._non_persistent_buffers_set
        ]
        if not names:
            continue
        device = next(iter(b.device for _, b in module.named_buffers(recurse=False)))
        cls = type(module).__name__
        if cls.endswith("RotaryEmbedding"):
            _rebuild_rotary(module, device)
        elif hasattr(module, "scalar_embed_scale") and names == ["embed_scale"]:
            module.embed_scale = torch.tensor(float(module.scalar_embed_scale), device=device)
        elif names == ["position_ids"] and isinstance(
            getattr(module, "position_embedding", None), nn.Embedding
        ):
            # SigLIP vision and text embeddings: one id per learned position.
            n = module.position_embedding.num_embeddings
            module.position_ids = torch.arange(n, device=device)[None]
        else:
            raise RuntimeError(
                f"Unknown non-persistent buffer(s) {names} in {mod_name or 'model'} ({cls}); "
                "teach fastpath.buffers how to rebuild them before using meta-device builds."
            )
        fixed.extend(f"{mod_name}.{n}" if mod_name else n for n in names)
    return fixed


def buffers_state(model: nn.Module) -> dict[str, Any]:
    """All buffers by name (for comparing a meta build against a normal one)."""
    return {name: buf.detach().clone() for name, buf in model.named_buffers()}

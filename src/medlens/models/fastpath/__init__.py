"""Fast local inference on CPU: weight-only int8/int4 decoders, meta-device helpers.

Public entry point for backends (imports torch only when called):

    from medlens.models.fastpath import apply_fastpath
    model = apply_fastpath(model, record.options)   # MEDLENS_QUANTIZE overrides

Options (record `options` table or env): quantize = "none" | "int8" | "int4",
quantize_head (bool), quantize_group_size (int4), int8_group_size, quantize_small_batch.

    from medlens.models.fastpath import fast_vision_attention
    fast_vision_attention(model)   # CPU: image tower on the bf16 kernel + int8 linears
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medlens.models.fastpath.options import QUANTIZE_MODES, FastPathOptions, parse_options

__all__ = [
    "QUANTIZE_MODES",
    "FastPathOptions",
    "apply_fastpath",
    "fast_vision_attention",
    "parse_options",
]


def apply_fastpath(model: Any, options: Mapping[str, Any] | FastPathOptions | None = None) -> Any:
    """Quantize a loaded Gemma 3 model's decoder in place per `options`; returns the model."""
    from medlens.models.fastpath.apply import apply_fastpath as _apply

    return _apply(model, options)


def fast_vision_attention(model: Any, *, int8: bool = True) -> int:
    """On CPU, run the model's image tower attention on the compiled bf16 kernel and its
    linear layers in int8 where the CPU multiplies int8 faster (fastpath/vision_int8.py).

    For MedGemma and MedSigLIP alike; returns the number of attention configs switched
    (0: no image tower, not on CPU, or the kernel cannot run on this machine).
    """
    from medlens.models.fastpath.vision import use_fast_vision_attention, vision_tower_of
    from medlens.models.fastpath.vision_int8 import use_int8_vision

    tower = vision_tower_of(model)
    if tower is None or any(p.device.type != "cpu" for p in tower.parameters()):
        return 0
    # Int8 linears too (MEDLENS_VISION_INT8): the tower is compute bound, VNNI doubles it.
    model.medlens_vision_int8 = use_int8_vision(tower) if int8 else 0
    return use_fast_vision_attention(tower)

"""Fast local inference on CPU: weight-only int8/int4 decoders, meta-device helpers.

Public entry point for backends (imports torch only when called):

    from medlens.models.fastpath import apply_fastpath
    model = apply_fastpath(model, record.options)   # MEDLENS_QUANTIZE overrides

Options (record `options` table or env): quantize = "none" | "int8" | "int4",
quantize_head (bool), quantize_group_size (int4), quantize_small_batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medlens.models.fastpath.options import QUANTIZE_MODES, FastPathOptions, parse_options

__all__ = ["QUANTIZE_MODES", "FastPathOptions", "apply_fastpath", "parse_options"]


def apply_fastpath(model: Any, options: Mapping[str, Any] | FastPathOptions | None = None) -> Any:
    """Quantize a loaded Gemma 3 model's decoder in place per `options`; returns the model."""
    from medlens.models.fastpath.apply import apply_fastpath as _apply

    return _apply(model, options)

"""Fast-path options: what a model record or the environment asks for (torch-free).

Precedence: environment (`MEDLENS_QUANTIZE`, `MEDLENS_QUANTIZE_HEAD`,
`MEDLENS_INT8_GROUP_SIZE`) > the record's
`options` table (e.g. `options = { quantize = "int8" }` in builtin_models.toml) > defaults.
The option default is no quantization (bf16/fp32 weights exactly as published); on a CPU a real
checkpoint gets int8 from fastpath/cpu_default.py unless its record or the env says otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from medlens.errors import ConfigError

QUANTIZE_MODES = ("none", "int8", "int4")


@dataclass(frozen=True)
class FastPathOptions:
    """How to speed up a loaded decoder.

    quantize: "none" | "int8" (symmetric, weight-only, one scale per `int8_group_size`
      input columns of each output row) | "int4"
      (asymmetric groups of `group_size` along the input dim, weight-only). Groups of 32
      kept 85 % top-1 agreement on the real Gemma 3 270M vs 82 % (64) and 75 % (128), at
      the same decode speed: 32 is the default.
    int8_group_size: 128 (default) or another multiple of 64; 0 = one scale per output
      row. On the real Gemma 3 270M, 64 is as close to bf16 as fp32 is, 128 nearly so,
      one scale per row clearly worse; decode costs 5-20 %, ~3 % and 0 (fastpath/int8.py).
    quantize_head: also store the tied embedding / LM head in int8 (it is ~16 % of
      MedGemma-4B's bytes and is read in full every decode step).
    small_batch: row counts up to this use the packed int8/int4 GEMV kernels; larger
      inputs (prefill) de-quantize block by block into bf16 matmuls, which are ~2.5x
      faster than the packed kernels at prompt sizes on AVX512-BF16 CPUs.
    """

    quantize: str = "none"
    group_size: int = 32
    int8_group_size: int = 128
    quantize_head: bool = True
    small_batch: int = 4

    @property
    def active(self) -> bool:
        return self.quantize != "none"


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, not {value!r}.")


def parse_options(
    options: Mapping[str, Any] | FastPathOptions | None = None,
    env: Mapping[str, str] | None = None,
) -> FastPathOptions:
    """Options from a record's `options` mapping, overridden by MEDLENS_QUANTIZE*."""
    if isinstance(options, FastPathOptions):
        base = options
    else:
        opts = dict(options or {})
        base = FastPathOptions(
            quantize=str(opts.get("quantize", "none")),
            group_size=int(opts.get("quantize_group_size", 32)),
            int8_group_size=int(opts.get("int8_group_size", 128)),
            quantize_head=_bool(opts.get("quantize_head", True), "quantize_head"),
            small_batch=int(opts.get("quantize_small_batch", 4)),
        )
    env = os.environ if env is None else env
    quantize = (env.get("MEDLENS_QUANTIZE") or base.quantize).strip().lower()
    head = base.quantize_head
    if env.get("MEDLENS_QUANTIZE_HEAD"):
        head = _bool(env["MEDLENS_QUANTIZE_HEAD"], "MEDLENS_QUANTIZE_HEAD")
    if quantize not in QUANTIZE_MODES:
        raise ConfigError(
            f"Unknown quantize mode {quantize!r}; use one of {', '.join(QUANTIZE_MODES)}."
        )
    int8_group = base.int8_group_size
    if env.get("MEDLENS_INT8_GROUP_SIZE"):
        try:
            int8_group = int(env["MEDLENS_INT8_GROUP_SIZE"])
        except ValueError:
            raise ConfigError("MEDLENS_INT8_GROUP_SIZE must be a whole number.") from None
    if int8_group < 0 or int8_group % 64:
        raise ConfigError("int8_group_size must be 0 (one scale per row) or a multiple of 64.")
    if base.group_size not in (32, 64, 128, 256):
        raise ConfigError("quantize_group_size must be 32, 64, 128 or 256.")
    if base.small_batch < 1:
        raise ConfigError("quantize_small_batch must be at least 1.")
    return FastPathOptions(
        quantize=quantize,
        group_size=base.group_size,
        int8_group_size=int8_group,
        quantize_head=head,
        small_batch=base.small_batch,
    )

"""Which path a MedGemma checkpoint takes on a CPU when nothing is configured, and why.

Measured on this project's 2-core machine (benchmarks/results/cpu-full.md, the same study
through every engine, interleaved): MedLens's transformers path with int8 weights (and int8
vision compute) is the fastest path that (a) runs from the checkpoints MedLens downloads
(`hf:` safetensors) and (b) passes the quality guard on the real Gemma 3 270M (int8 top-1
agreement vs its unquantized weights; int4 does not pass). So a CPU load of a real
(non-test) checkpoint without a `quantize` option takes int8. llama.cpp on a GGUF file is
the other measured path: it needs its own files (GGUF + mmproj) and the `gguf` extra, and
its quality cannot be checked here against unquantized weights; it is chosen by naming a
`gguf:` model, never silently.

Switch with `MEDLENS_QUANTIZE=none` (weights exactly as published, bf16), `=int4`, or a
record's `options = { quantize = "..." }`. Test models keep their own dtype (tests compare
exact numerics). GPUs run bf16 (the fast path is CPU-only).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CPU_DEFAULT_QUANTIZE = "int8"
WHY = (
    "fastest measured CPU path for safetensors checkpoints that passes the quality guard "
    "(benchmarks/results/cpu-full.md)"
)
HOW_TO_SWITCH = (
    "MEDLENS_QUANTIZE=none for weights as published (slower), or a gguf: model for llama.cpp"
)


@dataclass(frozen=True)
class CpuPath:
    """What a generator record runs on a CPU, in words for `models info` and `serve`."""

    engine: str
    weights: str
    why: str
    switch: str

    def line(self) -> str:
        return f"{self.engine}, {self.weights} weights: {self.why}. Switch: {self.switch}."


def options_for(record: Any, device: str) -> Mapping[str, Any]:
    """The record's fast-path options with the CPU default filled in where it applies."""
    options = dict(getattr(record, "options", None) or {})
    if _takes_default(record, device, options):
        options["quantize"] = CPU_DEFAULT_QUANTIZE
    return options


def _takes_default(record: Any, device: str, options: Mapping[str, Any]) -> bool:
    return (
        not str(device).startswith("cuda")
        and not getattr(record, "is_test", False)
        and "quantize" not in options
    )


def describe(record: Any, device: str = "cpu") -> CpuPath:
    """Which path `record` takes here, why, and how to switch (env included)."""
    scheme = str(getattr(record, "source", "")).split(":", 1)[0]
    if scheme == "gguf":
        return CpuPath("llama.cpp (GGUF)", "as in the GGUF file", "a gguf: model was named",
                       "name an hf: or path: model for MedLens's transformers path")
    if scheme in ("openai", "scripted"):
        return CpuPath(f"{scheme} backend", "none local", f"a {scheme}: model was named",
                       "name an hf: or path: model")
    options = options_for(record, device)
    env = os.environ.get("MEDLENS_QUANTIZE", "").strip().lower()
    quantize = env or str(options.get("quantize", "none"))
    if str(device).startswith("cuda"):
        return CpuPath("transformers on GPU", "bf16", "GPUs run the published weights",
                       "MEDLENS_DEVICE=cpu")
    if env:
        why = f"MEDLENS_QUANTIZE={env} is set"
    elif _takes_default(record, device, dict(getattr(record, "options", None) or {})):
        why = WHY
    elif getattr(record, "is_test", False):
        why = "test models load as built"
    else:
        why = "the model's options ask for it"
    weights = {"none": "bf16 (as published)", "int8": "int8", "int4": "int4"}.get(
        quantize, quantize)
    return CpuPath("MedLens transformers fast path", weights, why, HOW_TO_SWITCH)

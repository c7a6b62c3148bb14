"""Device, dtype and thread choices for torch backends (imports torch lazily)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from medlens.errors import ConfigError
from medlens.models.protocols import BackendInfo

_FP16_NAMES = {"float16", "fp16", "half", "torch.float16"}
_DTYPES = {"bfloat16": "bfloat16", "bf16": "bfloat16", "float32": "float32", "fp32": "float32"}


def check_dtype_name(dtype: str) -> str:
    """Normalise a dtype name; fp16 is refused (Gemma 3 gives NaN / empty output in fp16)."""
    name = dtype.strip().lower()
    if name in _FP16_NAMES:
        raise ConfigError(
            "float16 is not supported: Gemma 3 models produce NaN or empty output in fp16. "
            "Use bfloat16 (GPU/CPU) or float32."
        )
    if name == "auto":
        return name
    if name not in _DTYPES:
        raise ConfigError(f"Unknown dtype {dtype!r}; use auto, bfloat16 or float32.")
    return _DTYPES[name]


@lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Native bf16 arithmetic on this CPU (AVX512-BF16 / AMX on x86, BF16 on Arm)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set(text.split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def resolve_device(requested: str) -> str:
    import torch

    requested = (requested or "auto").lower()
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device=cuda was requested but no CUDA GPU is available to torch.")
    if requested not in ("cpu",) and not requested.startswith("cuda"):
        raise ConfigError(f"Unknown device {requested!r}; use auto, cpu or cuda.")
    return requested


def resolve_dtype(requested: str, *, device: str, record_dtype: str, is_test: bool) -> str:
    """'auto': fp32 for test models; bf16 on CUDA (if supported) and on bf16-capable CPUs."""
    name = check_dtype_name(requested or "auto")
    if name != "auto":
        return name
    wanted = check_dtype_name(record_dtype) if record_dtype else "bfloat16"
    if is_test or wanted == "float32":
        return "float32"
    if device.startswith("cuda"):
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if cpu_has_bf16() else "float32"


def torch_dtype(name: str) -> Any:
    import torch

    return {"bfloat16": torch.bfloat16, "float32": torch.float32}[check_dtype_name(name)]


def physical_cores() -> int:
    """Physical cores (hyper-threads slow matmul down); falls back to the CPU count."""
    try:
        pairs = set()
        core = phys = None
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("physical id"):
                phys = line.split(":")[1].strip()
            elif line.startswith("core id"):
                core = line.split(":")[1].strip()
                pairs.add((phys, core))
        if pairs:
            affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
            return max(1, min(len(pairs), affinity or len(pairs)))
    except OSError:
        pass
    return max(1, os.cpu_count() or 1)


def configure_threads() -> int:
    """Match torch's intra-op threads to physical cores unless the user set them.

    Every torch model load calls this first, so third-party logs and progress bars
    are quietened here too (medlens.models.quiet; kept with --verbose / MEDLENS_VERBOSE).
    """
    import torch

    from medlens.models.quiet import quiet_third_party

    quiet_third_party()

    if os.environ.get("OMP_NUM_THREADS") or os.environ.get("MEDLENS_THREADS"):
        n = int(os.environ.get("MEDLENS_THREADS") or os.environ["OMP_NUM_THREADS"])
    else:
        n = physical_cores()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def transformers_info(record: Any, *, weights_hash: str, dtype: str, device: str) -> BackendInfo:
    """What a model loaded with transformers reports about itself (provenance)."""
    return BackendInfo(
        model_id=record.id,
        backend="transformers",
        source=record.source,
        revision=record.revision,
        weights_hash=weights_hash,
        dtype=dtype,
        device=device,
        is_test=record.is_test,
    )

"""The machine's physical limits and fingerprint, measured the same way every run.

- read bandwidth: best of several full passes summing a 1 GiB float32 array (torch,
  vectorised, all threads): what a decode step needs (weights are only read).
- copy bandwidth: numpy copy of 1 GiB (read + write bytes counted), STREAM-"copy" style.
- bf16 / fp32 matmul GFLOP/s: square 2048 matmuls on all physical cores (oneDNN).
Each is the best of a few repeats (the limit, not the average), so figures reported as
"% of limit" are conservative. Load average is recorded: on a shared machine it says
how much the numbers were disturbed.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any


def _best(fn: Any, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def read_bandwidth_gbs(size_mb: int = 1024, repeats: int = 5) -> float:
    import torch

    a = torch.ones(size_mb * 1024 * 1024 // 4, dtype=torch.float32)
    t = _best(lambda: a.sum(), repeats)
    return a.numel() * 4 / t / 1e9


def copy_bandwidth_gbs(size_mb: int = 1024, repeats: int = 5) -> float:
    import numpy as np

    a = np.ones(size_mb * 1024 * 1024, dtype=np.uint8)
    b = np.empty_like(a)
    t = _best(lambda: np.copyto(b, a), repeats)
    return 2 * a.nbytes / t / 1e9


def matmul_gflops(dtype: str = "bfloat16", n: int = 2048, repeats: int = 5) -> float:
    import torch

    x = torch.randn(n, n).to(getattr(torch, dtype))
    y = torch.randn(n, n).to(getattr(torch, dtype))
    t = _best(lambda: x @ y, repeats)
    return 2 * n**3 / t / 1e9


def cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line.split(":", 1)[1].split()
    except OSError:
        pass
    return []


def fingerprint() -> dict[str, Any]:
    import torch
    import transformers

    from medlens.models.backends.torch_runtime import physical_cores

    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = int(line.split()[1]) / 1024**2
    except OSError:
        pass
    flags = set(cpu_flags())
    wanted = ["avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8", "amx_tile"]
    return {
        "cpu": model,
        "logical_cpus": os.cpu_count(),
        "physical_cores": physical_cores(),
        "torch_threads": torch.get_num_threads(),
        "memory_gb": round(mem_gb, 1),
        "cpu_flags": [f for f in wanted if f in flags],
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "hypervisor": "hypervisor" in flags,
        "load_average": list(os.getloadavg()),
    }


def measure(quick: bool = False) -> dict[str, Any]:
    """Fingerprint + measured limits (quick: smaller arrays, fewer repeats)."""
    from medlens.models.backends.torch_runtime import configure_threads

    configure_threads()
    size = 256 if quick else 1024
    reps = 3 if quick else 5
    out = fingerprint()
    out["read_bandwidth_gbs"] = round(read_bandwidth_gbs(size, reps), 2)
    out["copy_bandwidth_gbs"] = round(copy_bandwidth_gbs(size, reps), 2)
    out["bf16_matmul_gflops"] = round(matmul_gflops("bfloat16", 1024 if quick else 2048, reps), 1)
    out["fp32_matmul_gflops"] = round(matmul_gflops("float32", 1024 if quick else 2048, reps), 1)
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(measure(), indent=2))

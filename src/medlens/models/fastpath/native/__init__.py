"""Small C kernels, compiled on first use (no build step, no torch headers).

- `load()` -> the int8 GEMV (int8_gemv.c): the decode-time matrix-vector product at the
  machine's read bandwidth where torch's own kernel reaches ~2/3 of it. Needs AVX-512.
- `load_attention()` -> bidirectional attention for vision towers (attention.c), ~2x
  torch's CPU flash attention at SigLIP's head size. Needs AVX-512 BF16.

Each needs an x86-64 CPU with those instructions and a C compiler (`cc`, or $CC) with
OpenMP; without them the loader returns None and callers use torch's own kernels.
MEDLENS_NATIVE_KERNELS=0 turns both off.

Each shared object is built once per (source, compiler, CPU) under
$MEDLENS_KERNEL_CACHE (default ~/.cache/medlens/kernels) with -march=native, so it is
tuned for the machine it runs on. It links libgomp.so.1, the same soname torch's wheel
ships: when torch is loaded first, both use one OpenMP runtime (one thread pool, no two
pools spinning against each other on few cores).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("int8_gemv.c")
ATTENTION_SOURCE = Path(__file__).with_name("attention.c")
MAX_ROWS = 4  # input rows per call (decode: 1)
CFLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c11")
# Software prefetch distance (bytes) for the int8 GEMV on Intel cores, whose hardware
# prefetcher alone left one weight stream per core at ~15 GB/s (2-core Xeon with AMX:
# 15 -> 23 GB/s over MedGemma-4B's layers, 16 -> 28 GB/s over its LM head; read
# bandwidth 29 GB/s). On Zen 4 the same prefetches measured slower, so AMD gets none.
INTEL_PREFETCH_BYTES = 4096


@dataclass(frozen=True)
class NativeKernel:
    """The loaded kernel and where it came from."""

    path: Path
    fn: Any  # ctypes function

    def int8_gemv(self, x: Any, q: Any, scale: Any, out: Any, threads: int) -> None:
        """out[M, N] = x[M, K] @ (q[N, K] * scale)^T; contiguous CPU tensors, M <= 4.

        scale is [N] (one per output row) or [N, K / G] (groups of G input columns,
        G a multiple of 64).
        """
        import torch

        m, k = x.shape
        n = q.shape[0]
        groups = scale.shape[1] if scale.dim() == 2 else 1
        is_f32 = x.dtype == torch.float32
        rc = self.fn(
            x.data_ptr(), q.data_ptr(), scale.data_ptr(), out.data_ptr(), m, n, k,
            k // groups, 1 if is_f32 else 0, threads,
        )  # fmt: skip
        if rc != 0:
            raise RuntimeError(f"medlens int8 kernel refused shape {tuple(x.shape)} (rc={rc})")


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cache_dir() -> Path:
    env = os.environ.get("MEDLENS_KERNEL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "medlens" / "kernels"


def _compiler() -> str | None:
    cc = os.environ.get("CC") or "cc"
    return shutil.which(cc)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _cpu_vendor() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("vendor_id"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def compile_flags(vendor: str | None = None) -> tuple[str, ...]:
    """CFLAGS plus what this CPU's vendor is measured to need (see INTEL_PREFETCH_BYTES)."""
    vendor = _cpu_vendor() if vendor is None else vendor
    if vendor == "GenuineIntel":
        return (*CFLAGS, f"-DMEDLENS_PREFETCH={INTEL_PREFETCH_BYTES}")
    return CFLAGS


def build(cc: str, folder: Path, source: Path = SOURCE) -> Path:
    """Compile `source` (once per source/compiler/CPU); returns the shared object's path."""
    flags = compile_flags()
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60)
    parts = [source.read_bytes(), version.stdout.encode(), _cpu_model().encode()]
    parts.append(" ".join(flags).encode())
    key = hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]
    target = folder / f"{source.stem}-{key}.so"
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        out = Path(tmp) / target.name
        proc = subprocess.run(
            [cc, *flags, str(source), "-o", str(out)], capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr.strip()[-2000:] or f"{cc} failed")
        os.replace(out, target)  # atomic: concurrent builders each install a whole file
    return target


def _disabled() -> bool:
    value = os.environ.get("MEDLENS_NATIVE_KERNELS", "1").strip().lower()
    return value in ("0", "false", "no", "off")


def _library(source: Path, needs: tuple[str, ...]) -> ctypes.CDLL | None:
    """Build (or reuse) and load `source`; None where it cannot run here (reason logged)."""
    what = f"native kernel {source.stem}"
    if _disabled():
        return None
    missing = [f for f in needs if f not in cpu_flags()]
    if platform.machine().lower() not in ("x86_64", "amd64") or missing:
        log.info("%s: needs an x86-64 CPU with %s; using torch's", what, ", ".join(needs))
        return None
    cc = _compiler()
    if cc is None:
        log.info("%s: no C compiler (cc / $CC); using torch's", what)
        return None
    try:
        import torch  # noqa: F401  (loaded first: the kernel then shares torch's libgomp)

        return ctypes.CDLL(str(build(cc, cache_dir(), source)))
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        log.warning("%s unavailable (%s); using torch's", what, exc)
        return None


@cache
def load() -> NativeKernel | None:
    """The compiled int8 GEMV, or None where it cannot be used here (reason logged once)."""
    lib = _library(SOURCE, ("avx512f",))
    if lib is None:
        return None
    fn = lib.medlens_int8_gemv
    fn.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_long] * 4 + [ctypes.c_int, ctypes.c_int]
    fn.restype = ctypes.c_int
    return NativeKernel(Path(lib._name), fn)


@dataclass(frozen=True)
class AttentionKernel:
    """The loaded attention kernel (see attention.c)."""

    path: Path
    fn: Any  # ctypes function

    def attention(self, q: Any, k: Any, v: Any, out: Any, scale: float, threads: int) -> None:
        """out[B, T, H, D] = softmax(q k^T * scale) v for q [B, H, T, D], k/v [B, H, S, D].

        bf16 CPU tensors; q, k, v may be strided (last dim contiguous), out contiguous.
        """
        b, h, t, d = q.shape
        s = k.shape[2]
        rc = self.fn(
            q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(), b, h, t, s, d,
            *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], float(scale), threads,
        )  # fmt: skip
        if rc != 0:
            raise RuntimeError(f"medlens attention kernel refused shape {tuple(q.shape)} (rc={rc})")


@cache
def load_attention() -> AttentionKernel | None:
    """The compiled attention kernel, or None where it cannot be used here."""
    lib = _library(ATTENTION_SOURCE, ("avx512f", "avx512bw", "avx512_bf16"))
    if lib is None:
        return None
    fn = lib.medlens_attention_bf16
    fn.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_long] * 14 + [ctypes.c_float, ctypes.c_int]
    fn.restype = ctypes.c_int
    return AttentionKernel(Path(lib._name), fn)

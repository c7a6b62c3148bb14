"""A small C kernel for int8 decoding, compiled on first use (no build step, no torch headers).

`int8_gemv()` runs the decode-time matrix-vector product at the machine's read bandwidth
where torch's own kernel reaches ~2/3 of it (see int8_gemv.c). It needs an x86-64 CPU with
AVX-512 and a C compiler (`cc`, or $CC) with OpenMP; without either, `load()` returns None
and callers use `aten._weight_int8pack_mm`. MEDLENS_NATIVE_KERNELS=0 turns it off.

The shared object is built once per (source, compiler, CPU) under
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
MAX_ROWS = 4  # input rows per call (decode: 1)
CFLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c11")


@dataclass(frozen=True)
class NativeKernel:
    """The loaded kernel and where it came from."""

    path: Path
    fn: Any  # ctypes function

    def int8_gemv(self, x: Any, q: Any, scale: Any, out: Any, threads: int) -> None:
        """out[M, N] = (x[M, K] @ q[N, K]^T) * scale[N]; contiguous CPU tensors, M <= 4."""
        import torch

        m, k = x.shape
        n = q.shape[0]
        is_f32 = x.dtype == torch.float32
        rc = self.fn(
            x.data_ptr(), q.data_ptr(), scale.data_ptr(), out.data_ptr(), m, n, k,
            1 if is_f32 else 0, threads,
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


def build(cc: str, folder: Path) -> Path:
    """Compile SOURCE (once per source/compiler/CPU) and return the shared object's path."""
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60)
    parts = [SOURCE.read_bytes(), version.stdout.encode(), _cpu_model().encode()]
    parts.append(" ".join(CFLAGS).encode())
    key = hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]
    target = folder / f"int8_gemv-{key}.so"
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        out = Path(tmp) / target.name
        proc = subprocess.run(
            [cc, *CFLAGS, str(SOURCE), "-o", str(out)], capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr.strip()[-2000:] or f"{cc} failed")
        os.replace(out, target)  # atomic: concurrent builders each install a whole file
    return target


@cache
def load() -> NativeKernel | None:
    """The compiled kernel, or None where it cannot be used here (reason logged once)."""
    if os.environ.get("MEDLENS_NATIVE_KERNELS", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    if platform.machine().lower() not in ("x86_64", "amd64") or "avx512f" not in cpu_flags():
        log.info("native int8 kernel: needs an x86-64 CPU with AVX-512; using torch's")
        return None
    cc = _compiler()
    if cc is None:
        log.info("native int8 kernel: no C compiler (cc / $CC); using torch's")
        return None
    try:
        import torch  # noqa: F401  (loaded first: the kernel then shares torch's libgomp)

        path = build(cc, cache_dir())
        lib = ctypes.CDLL(str(path))
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        log.warning("native int8 kernel unavailable (%s); using torch's", exc)
        return None
    fn = lib.medlens_int8_gemv
    fn.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_long] * 3 + [ctypes.c_int, ctypes.c_int]
    fn.restype = ctypes.c_int
    return NativeKernel(path, fn)

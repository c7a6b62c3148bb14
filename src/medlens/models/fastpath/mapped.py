"""Keep memory-mapped checkpoint pages out of RSS while a model is quantized (Linux).

transformers memory-maps safetensors files (a private, copy-on-write mapping) and, when
the dtype matches, its tensors point straight into the mapping. Quantizing reads every
decoder weight once, so without help every page read stays resident until the whole
mapping is released at the end: loading MedGemma-4B with int8 peaked at 13.8 GiB
although it serves in ~5.6.

`madvise(MADV_DONTNEED)` on a file mapping only unmaps pages from this process: the data
stays in the kernel's page cache (reclaimable, not RSS) and a later read faults the page
back in from the file. The one thing it can lose is an in-place change to a page of a
private mapping, so only pages lying wholly inside a tensor that has just been consumed
(quantized or copied, and no longer used) are dropped; anonymous memory never is.
Without /proc/self/maps or madvise (not Linux), nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import mmap
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

MADV_DONTNEED = 4  # same value on every Linux architecture
PAGE = mmap.PAGESIZE
CHECKPOINT_SUFFIXES = (".safetensors",)


@dataclass(frozen=True)
class FileMapping:
    """One file mapping of a checkpoint: [start, end) in this process."""

    start: int
    end: int
    path: str


def parse_maps(text: str, suffixes: tuple[str, ...] = CHECKPOINT_SUFFIXES) -> list[FileMapping]:
    """File mappings of checkpoint files in /proc/<pid>/maps text."""
    found: list[FileMapping] = []
    for line in text.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) < 6:
            continue
        path = parts[5].strip()
        if not path.endswith(suffixes):
            continue
        start, _, end = parts[0].partition("-")
        found.append(FileMapping(int(start, 16), int(end, 16), path))
    return found


def checkpoint_mappings() -> list[FileMapping]:
    """This process's checkpoint file mappings ([] where /proc is not available)."""
    try:
        text = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    return parse_maps(text)


def release_pages(tensor: torch.Tensor) -> int:
    """Unmap the resident pages of `tensor` (contiguous) if it lies in a checkpoint mapping.

    Call it only once the tensor has been copied or quantized and is no longer used: a
    later read sees the file's bytes (faulted back in from the page cache), which differ
    from what was loaded only if the tensor was changed in place.
    Returns the bytes advised (0 when the storage is ordinary memory, which must never be
    advised: DONTNEED on anonymous memory would zero it).

    The caller holds `tensor`, so the mapping it lies in cannot be unmapped (and its
    addresses reused) between reading /proc/self/maps and the madvise call.
    """
    if tensor.device.type != "cpu" or not tensor.is_contiguous() or tensor.numel() == 0:
        return 0
    lo = tensor.data_ptr()
    hi = lo + tensor.numel() * tensor.element_size()
    for m in checkpoint_mappings():
        if m.start <= lo and hi <= m.end:
            madvise = _madvise()
            if madvise is None:
                return 0
            # Whole pages inside the tensor only: a page shared with a neighbour stays.
            start = lo + (-lo) % PAGE
            end = hi - hi % PAGE
            if end <= start:
                return 0
            if madvise(start, end - start, MADV_DONTNEED) != 0:
                log.debug("madvise failed on %s; leaving its pages", m.path)
                return 0
            return end - start
    return 0


@cache
def _madvise() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn

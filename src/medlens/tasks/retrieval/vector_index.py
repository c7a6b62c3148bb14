"""Nearest-neighbour search over L2-normalised vectors (cosine = inner product).

Two implementations behind one interface:
- `ExactIndex`: the float32 matrix in memory (or memory-mapped), queries as one matmul
  per block of rows + `argpartition` - exact, no build step, right for up to ~10⁵ vectors.
- `IVFIndex` (faiss): an inverted-file index with 8-bit scalar-quantised vectors
  (IVF-SQ8) whose candidates (k × `refine` of them) are re-ranked exactly against the
  float32 matrix. Quantisation keeps the index at ¼ of the matrix; the exact re-rank makes
  the returned similarities exact and recovers most of the quantisation loss. Recall
  against exact search is measured, never assumed (`recall_at_k`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from medlens.errors import BackendUnavailable

_BLOCK_ROWS = 131_072  # rows per matmul block: bounds the temporary score buffer


class VectorIndex(Protocol):
    kind: str

    @property
    def size(self) -> int: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(similarities (Q, k) float32, row numbers (Q, k) int64), best first; -1 pads."""
        ...


def normalise_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _topk_merge(
    best_s: np.ndarray, best_i: np.ndarray, s: np.ndarray, offset: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    kk = min(k, s.shape[1])
    part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
    cand_s = np.take_along_axis(s, part, axis=1)
    cand_i = part.astype(np.int64) + offset
    all_s = np.concatenate([best_s, cand_s], axis=1)
    all_i = np.concatenate([best_i, cand_i], axis=1)
    if all_s.shape[1] > k:
        keep = np.argpartition(-all_s, k - 1, axis=1)[:, :k]
        all_s = np.take_along_axis(all_s, keep, axis=1)
        all_i = np.take_along_axis(all_i, keep, axis=1)
    return all_s, all_i


def exact_search(matrix: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product, blockwise (works on np.memmap without loading it all)."""
    q = normalise_rows(queries)
    n = matrix.shape[0]
    k_eff = min(k, n)
    best_s = np.empty((q.shape[0], 0), np.float32)
    best_i = np.empty((q.shape[0], 0), np.int64)
    for start in range(0, n, _BLOCK_ROWS):
        block = np.asarray(matrix[start : start + _BLOCK_ROWS], dtype=np.float32)
        best_s, best_i = _topk_merge(best_s, best_i, q @ block.T, start, k_eff)
    order = np.argsort(-best_s, axis=1, kind="stable")
    sims = np.take_along_axis(best_s, order, axis=1)
    rows = np.take_along_axis(best_i, order, axis=1)
    return _pad(sims, rows, k)


def _pad(sims: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if sims.shape[1] >= k:
        return sims[:, :k].astype(np.float32), rows[:, :k].astype(np.int64)
    pad = k - sims.shape[1]
    return (
        np.pad(sims.astype(np.float32), ((0, 0), (0, pad)), constant_values=-np.inf),
        np.pad(rows.astype(np.int64), ((0, 0), (0, pad)), constant_values=-1),
    )


@dataclass
class ExactIndex:
    matrix: np.ndarray  # (N, dim) float32, rows L2-normalised
    kind: str = "exact"

    @property
    def size(self) -> int:
        return int(self.matrix.shape[0])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.size == 0:
            q = np.atleast_2d(queries)
            return _pad(np.empty((q.shape[0], 0)), np.empty((q.shape[0], 0), np.int64), k)
        return exact_search(self.matrix, queries, k)


def _faiss():  # type: ignore[no-untyped-def]
    try:
        import faiss
    except ImportError as exc:
        raise BackendUnavailable(
            "Approximate search needs faiss: `pip install medlens[retrieval]`."
        ) from exc
    return faiss


def default_nlist(n: int) -> int:
    """Inverted lists: 2·√N, 1 ≤ nlist ≤ N/39 (k-means needs ≥ 39 points per list).

    faiss suggests 4-16·√N; 2·√N keeps k-means training affordable on a 2-core machine
    (10⁶ vectors: 2000 lists) and the default nprobe scans a similar fraction either way.
    """
    return int(max(1, min(2 * int(np.sqrt(max(n, 1))), n // 39 or 1)))


class IVFIndex:
    """IVF-SQ8 candidates + exact float32 re-rank. See module docstring."""

    kind = "ivf"

    def __init__(self, matrix: np.ndarray, index: object, nprobe: int, refine: int) -> None:
        self.matrix = matrix
        self.index = index
        self.nprobe = nprobe
        self.refine = refine
        self.index.nprobe = nprobe  # type: ignore[attr-defined]

    @property
    def size(self) -> int:
        return int(self.matrix.shape[0])

    @classmethod
    def build(
        cls,
        matrix: np.ndarray,
        *,
        nlist: int | None = None,
        nprobe: int | None = None,
        refine: int = 4,
        train_size: int = 100_000,
        seed: int = 0,
    ) -> IVFIndex:
        faiss = _faiss()
        n, dim = matrix.shape
        nlist = nlist or default_nlist(n)
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        index.cp.niter = 10  # vs faiss default 25: affordable here; recall is measured
        index.cp.seed = seed
        rng = np.random.default_rng(seed)
        sample_rows = np.sort(
            rng.choice(n, size=min(n, max(train_size, 39 * nlist)), replace=False)
        )
        index.train(np.ascontiguousarray(matrix[sample_rows], dtype=np.float32))
        for start in range(0, n, _BLOCK_ROWS):
            index.add(np.ascontiguousarray(matrix[start : start + _BLOCK_ROWS], np.float32))
        return cls(matrix, index, nprobe or max(1, min(nlist, nlist // 16 + 8)), refine)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = normalise_rows(queries)
        kc = min(self.size, max(k, k * self.refine))
        _, cand = self.index.search(q, kc)  # type: ignore[attr-defined]
        sims_out = np.full((q.shape[0], k), -np.inf, np.float32)
        rows_out = np.full((q.shape[0], k), -1, np.int64)
        for i in range(q.shape[0]):
            c = cand[i][cand[i] >= 0]
            if c.size == 0:
                continue
            c = np.sort(c)  # sorted rows: sequential reads from a memmap
            exact = np.asarray(self.matrix[c], dtype=np.float32) @ q[i]
            top = np.argsort(-exact, kind="stable")[:k]
            sims_out[i, : top.size] = exact[top]
            rows_out[i, : top.size] = c[top]
        return sims_out, rows_out

    def save(self, path: Path, meta: dict[str, object]) -> None:
        """Index file + JSON sidecar, each written atomically (tmp + rename)."""
        faiss = _faiss()
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        faiss.write_index(self.index, str(tmp))
        os.replace(tmp, path)
        meta = {**meta, "nprobe": self.nprobe, "refine": self.refine, "kind": self.kind}
        side = path.with_name(path.name + ".json")
        tmp_side = side.with_name(side.name + f".tmp{os.getpid()}")
        tmp_side.write_text(json.dumps(meta, sort_keys=True), "utf-8")
        os.replace(tmp_side, side)

    @classmethod
    def load(cls, path: Path, matrix: np.ndarray) -> tuple[IVFIndex, dict[str, object]]:
        faiss = _faiss()
        meta = json.loads(path.with_name(path.name + ".json").read_text("utf-8"))
        index = faiss.read_index(str(path))
        return cls(matrix, index, int(meta["nprobe"]), int(meta["refine"])), meta


def recall_at_k(approx_rows: np.ndarray, exact_rows: np.ndarray, k: int) -> float:
    """Mean fraction of the exact top-k found in the approximate top-k."""
    hits = 0
    for a, e in zip(approx_rows[:, :k], exact_rows[:, :k], strict=True):
        hits += len(set(a[a >= 0].tolist()) & set(e[e >= 0].tolist()))
    denom = sum(int((e >= 0).sum()) for e in exact_rows[:, :k])
    return hits / denom if denom else 1.0

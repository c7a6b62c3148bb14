"""Synthetic vectors for retrieval tests and the benchmark."""

from __future__ import annotations

import numpy as np


def clustered(n: int, dim: int, n_clusters: int, *, noise: float = 0.6, seed: int = 0,
              centers: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(vectors (n, dim) float32 unit rows, centers): points = center + gaussian noise."""
    rng = np.random.default_rng(seed)
    if centers is None:
        centers = rng.standard_normal((n_clusters, dim)).astype(np.float32)
        centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    which = rng.integers(0, centers.shape[0], n)
    x = centers[which] + noise * rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), centers

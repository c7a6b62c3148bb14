"""Exact search equals brute force; the approximate index reaches recall@10 ≥ 0.95."""

from __future__ import annotations

import numpy as np
import pytest
from retrieval_synth import clustered

from medlens.tasks.retrieval import vector_index as index_mod
from medlens.tasks.retrieval.vector_index import ExactIndex, IVFIndex, exact_search, recall_at_k


def _brute(mat: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    s = q.astype(np.float64) @ mat.astype(np.float64).T
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, order, axis=1), order


@pytest.mark.parametrize("block_rows", [131_072, 97])  # one block, and many merged blocks
def test_exact_search_matches_brute_force(monkeypatch: pytest.MonkeyPatch, block_rows: int) -> None:
    monkeypatch.setattr(index_mod, "_BLOCK_ROWS", block_rows)
    rng = np.random.default_rng(7)
    mat = rng.standard_normal((3000, 48)).astype(np.float32)
    mat /= np.linalg.norm(mat, axis=1, keepdims=True)
    q = rng.standard_normal((25, 48)).astype(np.float32)
    sims, rows = exact_search(mat, q, 10)
    bs, br = _brute(mat, q, 10)
    np.testing.assert_array_equal(rows, br)  # random data: no ties
    np.testing.assert_allclose(sims, bs, atol=1e-5)
    assert np.all(np.diff(sims, axis=1) <= 1e-7)  # best first


def test_exact_index_pads_when_k_exceeds_size() -> None:
    mat = np.eye(3, dtype=np.float32)
    sims, rows = ExactIndex(mat).search(np.array([1.0, 0.2, 0.0]), 5)
    assert rows[0].tolist()[:3] == [0, 1, 2] and rows[0].tolist()[3:] == [-1, -1]
    assert np.isneginf(sims[0, 3:]).all()
    _s_empty, r_empty = ExactIndex(np.empty((0, 3), np.float32)).search(np.ones(3), 2)
    assert r_empty.tolist() == [[-1, -1]]


def test_ivf_recall_at_10_on_clustered_vectors(tmp_path) -> None:
    mat, centers = clustered(20_000, 64, 200, seed=1)
    queries, _ = clustered(200, 64, 200, seed=2, centers=centers)
    ivf = IVFIndex.build(mat)
    a_s, a_r = ivf.search(queries, 10)
    _e_s, e_r = exact_search(mat, queries, 10)
    recall = recall_at_k(a_r, e_r, 10)
    assert recall >= 0.95, recall
    # Returned similarities are exact (re-ranked against the float32 rows).
    hit = a_r >= 0
    np.testing.assert_allclose(a_s[hit], np.einsum("qd,qkd->qk", queries, mat[a_r])[hit],
                               atol=1e-5)
    # Persistence: the saved index gives the same answers.
    path = tmp_path / "x.ivf"
    ivf.save(path, {"generation": 3})
    loaded, meta = IVFIndex.load(path, mat)
    assert meta["generation"] == 3 and meta["kind"] == "ivf"
    _l_s, l_r = loaded.search(queries, 10)
    np.testing.assert_array_equal(l_r, a_r)


def test_recall_metric_is_honest() -> None:
    exact = np.array([[0, 1, 2, 3]])
    assert recall_at_k(exact, exact, 4) == 1.0
    assert recall_at_k(np.array([[0, 9, 8, 7]]), exact, 4) == 0.25
    assert recall_at_k(np.array([[5, 6, 7, 8]]), exact, 4) == 0.0

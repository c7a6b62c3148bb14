"""Case-library search latency: exact (numpy) vs approximate (faiss IVF-SQ8 + exact re-rank).

For each library size N (default 10⁴, 10⁵, 10⁶) of dimension 1152 (MedSigLIP):
- builds synthetic clustered unit vectors in chunks into a float32 file (never two copies
  of the matrix in memory), plus held-out queries from the same distribution;
- exact search: single-query latency p50/p99 (the ground truth for recall comes from a
  batched exact pass);
- IVF: build time, then single-query latency p50/p99 and recall@10 against exact, for a
  few nprobe values (the library's default is marked).

    python benchmarks/search_latency.py                       # full run (≈ 10-20 min, 6 GB RAM)
    python benchmarks/search_latency.py --sizes 10000 --queries 50   # quick check

Results go to benchmarks/results/search_latency.{md,json}. Synthetic data is an
assumption: real embedding sets have their own cluster structure, so measure recall on
your own library too (tests/retrieval does so for the library's code path).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from medlens.tasks.retrieval.vector_index import IVFIndex, default_nlist, exact_search, recall_at_k

DIM = 1152
CHUNK = 50_000


def make_data(path: Path, n: int, dim: int, n_clusters: int, seed: int,
              flat: bool = False) -> np.ndarray:
    """Clustered unit vectors written chunk by chunk to a .npy file; returns a memmap."""
    rng = np.random.default_rng(seed)
    # Two levels (groups of ~20 related clusters) so that neighbouring clusters overlap,
    # as related findings do in a real embedding space; a flat mixture is too easy.
    supers = rng.standard_normal((max(1, n_clusters // 20), dim)).astype(np.float32)
    supers /= np.linalg.norm(supers, axis=1, keepdims=True)
    centers = supers[rng.integers(0, supers.shape[0], n_clusters)] + (
        0.5 / np.sqrt(dim)) * rng.standard_normal((n_clusters, dim), dtype=np.float32)
    if flat:  # --flat: independent clusters; with small clusters a hard stress case
        centers = rng.standard_normal((n_clusters, dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    # Per-cluster spread varies (tight and loose groups), as in real embedding sets.
    spread = rng.uniform(0.5, 1.0, n_clusters).astype(np.float32)
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n + 0, dim))
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)  # one chunk in memory at a time
        which = rng.integers(0, n_clusters, m)
        x = centers[which] + (spread[which, None] / np.sqrt(dim)) * rng.standard_normal(
            (m, dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        mm[start : start + m] = x
    mm.flush()
    np.save(path.with_suffix(".centers.npy"), np.stack([centers.ravel(), np.repeat(spread, dim)]))
    return mm


def make_queries(path: Path, q: int, dim: int, seed: int) -> np.ndarray:
    arr = np.load(path.with_suffix(".centers.npy"))
    centers = arr[0].reshape(-1, dim)
    spread = arr[1].reshape(-1, dim)[:, 0]
    rng = np.random.default_rng(seed + 1)
    which = rng.integers(0, centers.shape[0], q)
    x = centers[which] + (spread[which, None] / np.sqrt(dim)) * rng.standard_normal(
        (q, dim), dtype=np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def latencies(fn, queries: np.ndarray) -> tuple[list[float], list[np.ndarray]]:
    times, rows = [], []
    fn(queries[:1])  # warm-up (page cache, faiss threads)
    for i in range(queries.shape[0]):
        t = time.perf_counter()
        _, r = fn(queries[i : i + 1])
        times.append((time.perf_counter() - t) * 1000)
        rows.append(r[0])
    return times, rows


def pct(v: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(v), p))


def run_size(n: int, args: argparse.Namespace, work: Path) -> dict:
    print(f"== N={n:,} dim={args.dim}", flush=True)
    t0 = time.perf_counter()
    path = work / f"vectors_{n}.npy"
    n_clusters = args.clusters or max(10, n // args.cluster_size)
    make_data(path, n, args.dim, n_clusters, args.seed, args.flat)
    gen_s = time.perf_counter() - t0
    mat = np.load(path, mmap_mode="r")
    mat = np.ascontiguousarray(mat)  # into RAM once (4.6 GB at 10⁶): latency, not disk
    queries = make_queries(path, args.queries, args.dim, args.seed)
    t = time.perf_counter()
    _, truth = exact_search(mat, queries, args.k)
    truth_s = time.perf_counter() - t
    n_exact = min(args.queries, args.exact_queries)
    ex_times, ex_rows = latencies(lambda q, m=mat: exact_search(m, q, args.k), queries[:n_exact])
    out: dict = {
        "n": n, "dim": args.dim, "k": args.k, "queries": args.queries, "clusters": n_clusters,
        "data_gen_s": round(gen_s, 1), "exact_batch_truth_s": round(truth_s, 2),
        "exact": {"queries": n_exact, "p50_ms": pct(ex_times, 50), "p99_ms": pct(ex_times, 99),
                  "recall_at_k": recall_at_k(np.stack(ex_rows), truth[:n_exact], args.k)},
        "ivf": [],
    }
    print(f"  exact p50 {out['exact']['p50_ms']:.1f} ms p99 {out['exact']['p99_ms']:.1f} ms",
          flush=True)
    t = time.perf_counter()
    ivf = IVFIndex.build(mat, refine=args.refine)
    build_s = time.perf_counter() - t
    default_nprobe = ivf.nprobe
    nlist = default_nlist(n)
    probes = {max(1, default_nprobe // 2), default_nprobe, min(nlist, default_nprobe * 2)}
    for nprobe in sorted(probes):
        ivf.nprobe = nprobe
        ivf.index.nprobe = nprobe
        times, rows = latencies(lambda q, i=ivf: i.search(q, args.k), queries)
        rec = recall_at_k(np.stack(rows), truth, args.k)
        entry = {"nlist": nlist, "nprobe": nprobe, "refine": args.refine,
                 "default": nprobe == default_nprobe, "build_s": round(build_s, 1),
                 "p50_ms": pct(times, 50), "p99_ms": pct(times, 99), "recall_at_k": rec}
        out["ivf"].append(entry)
        print(f"  ivf nlist {nlist} nprobe {nprobe}: p50 {entry['p50_ms']:.2f} ms "
              f"p99 {entry['p99_ms']:.2f} ms recall@{args.k} {rec:.4f} (build {build_s:.0f} s)",
              flush=True)
    path.unlink(missing_ok=True)
    path.with_suffix(".centers.npy").unlink(missing_ok=True)
    return out


def write_results(results: list[dict], args: argparse.Namespace, command: str) -> None:
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    layout = "independent (--flat)" if args.flat else "in groups of ~20 overlapping clusters"
    meta = {"command": command, "machine": f"{platform.machine()} {os.cpu_count()} CPUs",
            "python": sys.version.split()[0], "numpy": np.__version__,
            "faiss": __import__("faiss").__version__, "when": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                            time.gmtime()),
            "threads": args.threads,
            "data": "synthetic clustered unit vectors: N/"
                    f"{args.cluster_size} clusters (or --clusters) "
                    f"{layout}"
                    ", per-cluster spread "
                    f"U(0.5, 1.0), seed {args.seed}; queries held out"}
    (out_dir / f"{args.name}.json").write_text(json.dumps({"meta": meta, "results": results},
                                                            indent=1), "utf-8")
    lines = ["# Case-library search latency", "", f"Command: `{command}`", "",
             f"Machine: {meta['machine']} (shared with other jobs while measured); "
             f"faiss {meta['faiss']}, numpy {meta['numpy']}; {args.threads} thread(s) for BLAS "
             f"and faiss; {meta['when']}.", "",
             f"Data: {meta['data']}. Single-query latency (one query at a time), k={args.k}.",
             "", "| N | method | params | p50 ms | p99 ms | recall@10 | build s |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        e = r["exact"]
        lines.append(f"| {r['n']:,} | exact (numpy) | {e['queries']} queries | {e['p50_ms']:.1f} "
                     f"| {e['p99_ms']:.1f} | {e['recall_at_k']:.3f} | - |")
        for v in r["ivf"]:
            mark = " (default)" if v["default"] else ""
            lines.append(f"| {r['n']:,} | IVF-SQ8 + exact re-rank{mark} | nlist {v['nlist']}, "
                         f"nprobe {v['nprobe']}, refine {v['refine']} | {v['p50_ms']:.2f} | "
                         f"{v['p99_ms']:.2f} | {v['recall_at_k']:.3f} | {v['build_s']} |")
    (out_dir / f"{args.name}.md").write_text("\n".join(lines) + "\n", "utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--dim", type=int, default=DIM)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--exact-queries", type=int, default=50, help="single queries timed (exact)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--clusters", type=int, default=0, help="0: N / --cluster-size")
    ap.add_argument("--cluster-size", type=int, default=200, help="mean vectors per cluster")
    ap.add_argument("--flat", action="store_true",
                    help="independent clusters, no groups (with --cluster-size 10: stress case)")
    ap.add_argument("--refine", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1,
                    help="BLAS and faiss threads (1: fastest for single queries on a busy box)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work-dir", default=None, help="scratch folder for the vector files")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--name", default="search_latency", help="output file base name")
    args = ap.parse_args()
    import faiss
    from threadpoolctl import threadpool_limits

    faiss.omp_set_num_threads(args.threads)
    threadpool_limits(args.threads)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="medlens-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/search_latency.py " + " ".join(sys.argv[1:])
    results = []
    try:
        for n in [int(float(s)) for s in args.sizes.split(",")]:
            results.append(run_size(n, args, work))
            write_results(results, args, command.strip())
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {args.out}/{args.name}.md and .json")


if __name__ == "__main__":
    main()

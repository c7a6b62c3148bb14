"""MedLens CPU benchmark: plain transformers (baseline) vs MedLens's local path (ours).

    python benchmarks/run.py                 # full size: medgemma-4b + medsiglip-448
    python benchmarks/run.py --quick --out /tmp/bench   # small shapes, < 2 min (CI smoke)

Random-weight models with the exact shapes (benchmarks/shapes.py; parameter counts are
asserted) are built once and cached under .cache/bench-models. Each (model, variant) runs
in its own worker process (benchmarks/workers.py) so peak RSS is per variant; runs are
interleaved baseline, ours, baseline, ours, ... and each figure is the median of --runs.
The machine's read bandwidth and bf16 matmul rate are measured first (benchmarks/machine.py)
and each stage is printed as a % of its physical limit (benchmarks/limits.py).
Writes <out>/<name>.json and <out>/<name>.md (table + machine fingerprint).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from harness import Worker, cosine, start_worker  # noqa: E402
from limits import attach_limits  # noqa: E402
from report import STAGES, table  # noqa: E402
from workers import MARK  # noqa: E402


def build_models(names: list[str]) -> dict[str, dict[str, Any]]:
    """Build (or reuse) the cached random models in a child process; returns their info."""
    code = (
        "import json,sys; sys.path.insert(0,'benchmarks'); import shapes;"
        "out={};\n"
        "for n in sys.argv[1:]:\n"
        "    d=shapes.cached_model_dir(n); m=json.loads((d/'bench_model.json').read_text())\n"
        "    want=shapes.SHAPES[n].params\n"
        "    assert want is None or m['params']==want, (n, m['params'], want)\n"
        "    out[n]={'path':str(d),**m}\n"
        "print('" + MARK + "'+json.dumps(out))"
    )
    res = subprocess.run([sys.executable, "-c", code, *names], cwd=REPO, text=True,
                         stdout=subprocess.PIPE, check=True)
    line = next(x for x in res.stdout.splitlines() if x.startswith(MARK))
    return json.loads(line[len(MARK):])


def _median(rows: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def medgemma_variants(args: argparse.Namespace) -> dict[str, str]:
    """Variant name -> weight format: baseline, ours (--quantize), ours-<q> (--also-quantize),
    gguf-<type> (--gguf: MedLens's llama.cpp backend on the same weights converted)."""
    out = {"baseline": "bf16", "ours": args.quantize}
    for q in args.also_quantize or []:
        out[f"ours-{q}"] = q
    for q in args.gguf or []:
        out[f"gguf-{q}"] = q.upper()
    return out


def _spec(variant: str, weights: str, base: dict[str, Any], ggufs: dict[str, Path]) -> dict:
    if variant.startswith("gguf-"):
        q = variant.removeprefix("gguf-")
        return {**base, "model": "medgemma", "variant": "gguf", "gguf": str(ggufs[q]),
                "mmproj": str(ggufs["mmproj"])}
    kind = "baseline" if variant == "baseline" else "ours"
    return {**base, "model": "medgemma", "variant": kind, "quantize": weights}


def bench_medgemma(path: str, args: argparse.Namespace, log: Any) -> dict[str, Any]:
    """Interleaved runs of every variant. With --one-at-a-time (the default when llama.cpp
    rows are included: all five would not fit in memory together) each run starts its
    variant's worker, measures, and stops it, so one model is resident at a time."""
    base = {"path": path, "quick": args.quick, "prompt_tokens": args.prompt_tokens}
    variants = medgemma_variants(args)
    ggufs: dict[str, Path] = {}
    if args.gguf:
        import gguf_build

        ggufs = gguf_build.build(Path(path), list(args.gguf), log=log)
    one_at_a_time = args.one_at_a_time or bool(args.gguf)
    workers: dict[str, Worker] = {}
    loads: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    if not one_at_a_time:
        # Ours first: loading bf16 then quantizing needs the bf16 bytes for a while.
        for variant in [*list(variants)[1:], "baseline"]:
            if variant == "baseline":
                _drop_extras_if_short_of_memory(path, variants, workers, log)
            workers[variant] = start_worker(variant, _spec(variant, variants[variant], base, ggufs),
                                      loads, log)
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    feats: dict[str, dict[str, Any]] = {}
    t_runs = time.perf_counter()
    for i in range(args.runs):
        if i and _past_deadline(args, runs_done=i, started=t_runs, log=log):
            break
        for variant in variants:
            w = workers.get(variant) or start_worker(
                variant, _spec(variant, variants[variant], base, ggufs), loads, log)
            new = args.baseline_new_tokens if variant == "baseline" else None
            if i == 0 and not variant.startswith("gguf-"):
                feats[variant] = w.ask("features")
            r = w.ask("run", new or args.new_tokens)
            if variant != "baseline" or i < args.followup_runs_baseline:
                r |= w.ask("followup")
            if one_at_a_time:
                w.close()
            runs[variant].append(r)
            log(f"medgemma/{variant} run {i + 1}: " + ", ".join(
                f"{k}={v:.3g}" for k, v in r.items() if isinstance(v, float)))
            _partial(args, "medgemma", runs)
    result: dict[str, Any] = {}
    for variant in variants:
        load = max(loads[variant], key=lambda x: x["load_peak_rss_mb"])
        result[variant] = {"load": load, "loads": loads[variant], "runs": runs[variant],
                           "weights": variants[variant],
                           "median": {k: _median(runs[variant], k) for k, *_ in STAGES}}
        result[variant]["median"]["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs[variant])
        if variant in feats and variant != "baseline":
            result[variant]["image_feature_cosine"] = cosine(feats["baseline"], feats[variant])
        if variant in workers:
            workers[variant].close()
    return result


def bench_medsiglip(path: str, args: argparse.Namespace, log: Any) -> dict[str, Any]:
    spec = {"path": path, "quick": args.quick, "model": "medsiglip"}
    workers = {v: Worker({**spec, "variant": v}) for v in ("baseline", "ours")}
    result: dict[str, Any] = {v: {"load": w.ready, "batches": {}} for v, w in workers.items()}
    for batch in args.siglip_batches:
        runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "ours": []}
        t_runs = time.perf_counter()
        for i in range(args.runs):
            if i and _past_deadline(args, runs_done=i, started=t_runs, log=log):
                break
            for variant, w in workers.items():
                r = w.ask("run", batch)
                runs[variant].append(r)
                log(f"medsiglip/{variant} batch {batch} run {i + 1}: "
                    f"{r['images_per_s']:.3g} img/s")
                _partial(args, f"medsiglip-b{batch}", runs)
        for variant in workers:
            result[variant]["batches"][str(batch)] = {
                "runs": runs[variant],
                "median": {k: _median(runs[variant], k)
                           for k in ("seconds", "images_per_s", "repeat_scoring_s")},
                "peak_rss_mb": max(r["peak_rss_mb"] for r in runs[variant]),
            }
    feats = {v: w.ask("features") for v, w in workers.items()}
    result["ours"]["image_feature_cosine"] = cosine(feats["baseline"], feats["ours"])
    for w in workers.values():
        w.close()
    return result


def _mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 1 << 62


def _drop_extras_if_short_of_memory(
    path: str, variants: dict[str, str], workers: dict[str, Worker], log: Any
) -> None:
    """The baseline holds every bf16 byte plus activations: make room (drop ours-<q> extras)."""
    need = sum(f.stat().st_size for f in Path(path).glob("*.safetensors")) * 1.25 + 2e9
    for extra in [v for v in variants if v.startswith("ours-")]:
        if _mem_available() >= need:
            return
        log(f"medgemma/{extra}: dropped, {_mem_available() / 1e9:.1f} GB available < "
            f"{need / 1e9:.1f} GB needed by the baseline")
        workers.pop(extra).close()
        del variants[extra]


def _past_deadline(args: argparse.Namespace, runs_done: int, started: float, log: Any) -> bool:
    """True when one more interleaved pair would end after --deadline (fewer runs, noted)."""
    if not args.deadline:
        return False
    per_pair = (time.perf_counter() - started) / runs_done
    now = datetime.now(UTC)
    hh, mm = (int(x) for x in args.deadline.split(":"))
    end = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
    if now.timestamp() + per_pair > end.timestamp():
        log(f"deadline {args.deadline} UTC: stopping after {runs_done} run(s) per variant")
        args.stopped_early = True
        return True
    return False


def _partial(args: argparse.Namespace, part: str, runs: dict[str, Any]) -> None:
    """Raw runs so far (a crash or a timeout still leaves the measurements behind)."""
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.name}.partial.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[part] = runs
    path.write_text(json.dumps(data, indent=1) + "\n")


def quality(args: argparse.Namespace, log: Any) -> dict[str, Any]:
    """int8/int4 vs unquantized on the real Gemma 3 270M (child process, own memory)."""
    code = (
        "import json,sys; sys.path.insert(0,'benchmarks'); import quality;"
        f"print('{MARK}'+json.dumps(quality.guard_270m(n_prompts={args.quality_prompts},"
        f" n_new={args.quality_tokens})))"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, text=True,
                         stdout=subprocess.PIPE, check=True)
    line = next(x for x in res.stdout.splitlines() if x.startswith(MARK))
    out = json.loads(line[len(MARK):])
    for mode, q in out["modes"].items():
        log(f"quality {mode}: greedy {q['greedy_agreement']:.3f}, top-1 {q['top1_agreement']:.3f}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small shapes (CI smoke run)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--name", help="result file stem (default cpu-full / cpu-quick)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--prompt-tokens", type=int, help="text tokens besides the image (200)")
    p.add_argument("--new-tokens", type=int, help="output tokens, min = max (200)")
    p.add_argument("--baseline-new-tokens", type=int,
                   help="fewer output tokens for the baseline (its decode rate is measured "
                        "over these; the end-to-end figure is then extrapolated to --new-tokens)")
    p.add_argument("--followup-runs-baseline", type=int, default=None,
                   help="baseline follow-up measurements (each re-encodes the image)")
    p.add_argument("--quantize", default="int8", choices=["none", "int8", "int4"])
    p.add_argument("--also-quantize", nargs="*", choices=["none", "int8", "int4"],
                   help="more 'ours' variants in the same interleaved run (e.g. int4)")
    p.add_argument("--gguf", nargs="*", choices=["q8_0", "q4_k_m"], default=None,
                   help="llama.cpp rows: the same checkpoint converted to GGUF (default at full "
                        "size: q8_0 q4_k_m when llama-cpp-python is installed; --gguf alone: "
                        "none)")
    p.add_argument("--one-at-a-time", action="store_true",
                   help="start and stop each variant's worker per run (default with --gguf)")
    p.add_argument("--siglip-batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--only", nargs="+", choices=["medgemma", "medsiglip", "quality"])
    p.add_argument("--quality-prompts", type=int, default=16)
    p.add_argument("--quality-tokens", type=int, default=32)
    p.add_argument("--deadline", help="HH:MM UTC: run fewer repeats rather than end later")
    args = p.parse_args(argv)
    args.stopped_early = False
    quick = args.quick
    args.prompt_tokens = args.prompt_tokens or (24 if quick else 200)
    args.new_tokens = args.new_tokens or (8 if quick else 200)
    if args.gguf is None:
        import importlib.util

        has_llama = importlib.util.find_spec("llama_cpp") is not None
        args.gguf = ["q8_0", "q4_k_m"] if has_llama and not quick else []
    if args.followup_runs_baseline is None:
        args.followup_runs_baseline = args.runs
    parts = args.only or (["medgemma", "medsiglip"] if quick else
                          ["medgemma", "medsiglip", "quality"])
    name = args.name = args.name or ("cpu-quick" if quick else "cpu-full")
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:7.1f} s] {msg}", file=sys.stderr, flush=True)

    import machine

    if parts == ["quality"]:  # agreement does not depend on speed: no limits needed
        mach = machine.fingerprint()
    else:
        mach = machine.measure(quick=quick)
        log(f"machine: {mach['read_bandwidth_gbs']} GB/s read, {mach['bf16_matmul_gflops']} "
            "GFLOP/s bf16")
    names = {"medgemma": "medgemma-quick" if quick else "medgemma-4b",
             "medsiglip": "medsiglip-quick" if quick else "medsiglip-448"}
    wanted = [names[p] for p in parts if p in names]
    built = build_models(wanted) if wanted else {}
    models = {k: built[v] for k, v in names.items() if v in built}
    log("models: " + ", ".join(f"{m['name']} {m['params']:,}" for m in models.values()))
    results: dict[str, Any] = {}
    # MedSigLIP first: short and predictable; MedGemma's repeats then fit --deadline.
    if "medsiglip" in parts:
        results["medsiglip"] = bench_medsiglip(models["medsiglip"]["path"], args, log)
    if "medgemma" in parts:
        results["medgemma"] = bench_medgemma(models["medgemma"]["path"], args, log)
        _extrapolate(results["medgemma"], args)
    if "read_bandwidth_gbs" in mach:
        attach_limits(results, mach, models)
    if "quality" in parts:
        results["quality"] = quality(args, log)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    report = {
        "mode": "quality guard" if parts == ["quality"] else ("quick" if quick else "full size"),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["python benchmarks/run.py", *(argv or sys.argv[1:])]),
        "machine": mach, "models": models, "settings": settings,
        "settings_text": _settings_text(args),
        "results": results, "wall_s": time.perf_counter() - t_start,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
    md = table(report)
    (args.out / f"{name}.md").write_text(md)
    (args.out / f"{name}.partial.json").unlink(missing_ok=True)
    print(md)
    return 0


def _extrapolate(res: dict[str, Any], args: argparse.Namespace) -> None:
    """Baseline measured with fewer output tokens: e2e = ttft + (N - 1) / decode rate."""
    n_base = args.baseline_new_tokens
    if not n_base or n_base == args.new_tokens:
        return
    med = res["baseline"]["median"]
    med["end_to_end_measured_s"] = med["end_to_end_s"]
    med["end_to_end_s"] = med["ttft_s"] + (args.new_tokens - 1) / med["decode_tokens_per_s"]
    res["baseline"]["end_to_end_note"] = (
        f"extrapolated: measured {n_base} output tokens, end-to-end = time to first token + "
        f"{args.new_tokens - 1} / decode tok/s")


def _settings_text(args: argparse.Namespace) -> str:
    s = (f"{args.prompt_tokens} prompt text tokens + one image, {args.new_tokens} output "
         f"tokens (min = max), greedy; ours = MedLens TransformersGenerator with "
         f"MEDLENS_QUANTIZE={args.quantize}"
         + "".join(f" (and {q} as ours-{q})" for q in args.also_quantize or [])
         + "".join(f"; llama.cpp {q.upper()} as gguf-{q}" for q in args.gguf or [])
         + f"; {args.runs} runs")
    if args.stopped_early:
        s += " (fewer runs where --deadline stopped them: see the JSON run lists)"
    if args.baseline_new_tokens and args.baseline_new_tokens != args.new_tokens:
        s += (f"; baseline decoded {args.baseline_new_tokens} tokens per run (its end-to-end "
              f"is extrapolated to {args.new_tokens})")
    return s


if __name__ == "__main__":
    raise SystemExit(main())

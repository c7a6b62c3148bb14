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

from workers import MARK  # noqa: E402

STAGES = [  # (key, label, unit, better)
    ("ingest_preprocess_s", "ingest + preprocess", "s", "lower"),
    ("vision_s", "vision encode (tower + projector)", "s", "lower"),
    ("prefill_s", "prefill", "s", "lower"),
    ("ttft_s", "time to first token", "s", "lower"),
    ("decode_tokens_per_s", "decode", "tok/s", "higher"),
    ("end_to_end_s", "end-to-end study", "s", "lower"),
    ("followup_ttft_s", "follow-up question, first token", "s", "lower"),
]


class Worker:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "benchmarks" / "workers.py"), json.dumps(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
        )
        self.ready = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(MARK):
                out = json.loads(line[len(MARK):])
                if "error" in out:
                    raise RuntimeError(f"{self.spec['model']}/{self.spec['variant']}: "
                                       f"{out['error']}")
                return out
        raise RuntimeError(f"worker {self.spec['model']}/{self.spec['variant']} exited "
                           f"(code {self.proc.wait()})")

    def ask(self, op: str, arg: Any = None) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, "arg": arg}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.ask_quit()
            finally:
                self.proc.wait(timeout=120)

    def ask_quit(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
        self.proc.stdin.close()


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
    """Variant name -> weight format: baseline, ours (--quantize), ours-<q> (--also-quantize)."""
    out = {"baseline": "bf16", "ours": args.quantize}
    for q in args.also_quantize or []:
        out[f"ours-{q}"] = q
    return out


def bench_medgemma(path: str, args: argparse.Namespace, log: Any) -> dict[str, Any]:
    spec = {"path": path, "quick": args.quick, "prompt_tokens": args.prompt_tokens}
    variants = medgemma_variants(args)
    result: dict[str, Any] = {}
    workers = {}
    # Ours first: loading bf16 then quantizing needs the bf16 bytes for a while.
    for variant in [*list(variants)[1:], "baseline"]:
        if variant == "baseline":
            _drop_extras_if_short_of_memory(path, variants, workers, log)
        t = time.perf_counter()
        kind = "baseline" if variant == "baseline" else "ours"
        workers[variant] = Worker({**spec, "model": "medgemma", "variant": kind,
                                   "quantize": variants[variant]})
        log(f"medgemma/{variant}: loaded in {time.perf_counter() - t:.1f} s")
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    t_runs = time.perf_counter()
    for i in range(args.runs):
        if i and _past_deadline(args, runs_done=i, started=t_runs, log=log):
            break
        for variant in variants:
            if variant == "baseline":
                r = workers[variant].ask("run", args.baseline_new_tokens or args.new_tokens)
            else:
                r = workers[variant].ask("run", args.new_tokens)
            if variant != "baseline" or i < args.followup_runs_baseline:
                r |= workers[variant].ask("followup")
            runs[variant].append(r)
            log(f"medgemma/{variant} run {i + 1}: " + ", ".join(
                f"{k}={v:.3g}" for k, v in r.items() if isinstance(v, float)))
            _partial(args, "medgemma", runs)
    for variant in variants:
        w = workers[variant]
        result[variant] = {"load": w.ready, "runs": runs[variant], "weights": variants[variant],
                           "median": {k: _median(runs[variant], k) for k, *_ in STAGES}}
        result[variant]["median"]["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs[variant])
        w.close()
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


def limits(result: dict[str, Any], machine: dict[str, Any], models: dict[str, Any]) -> None:
    """Attach % of physical limit to each median (in place)."""
    import limits as lim
    from transformers import AutoConfig

    bw = machine["read_bandwidth_gbs"] * 1e9
    peak = machine["bf16_matmul_gflops"] * 1e9
    if "medgemma" in result:
        cfg = AutoConfig.from_pretrained(models["medgemma"]["path"])
        vis = lim.medgemma_vision_flops(cfg)
        for res in result["medgemma"].values():
            med = res["median"]
            prompt = int(statistics.median(r["prompt_tokens"] for r in res["runs"]))
            new = int(statistics.median(r["new_tokens"] for r in res["runs"]))
            wbytes = res["load"]["decoder_weight_bytes"]
            step = wbytes + lim.kv_bytes_read(cfg, prompt + new // 2)
            pct: dict[str, float | None] = {}
            pct["vision_s"] = vis / med["vision_s"] / peak if med["vision_s"] else None
            pf = lim.prefill_flops(cfg, prompt)
            pct["prefill_s"] = pf / med["prefill_s"] / peak if med["prefill_s"] else None
            tps = med["decode_tokens_per_s"]
            pct["decode_tokens_per_s"] = tps * step / bw if tps else None
            res["limit"] = {
                "vision_gflop": vis / 1e9, "prefill_gflop": pf / 1e9,
                "decode_bytes_per_token_gb": step / 1e9,
                "decode_tokens_per_s_limit": bw / step,
                "percent": {k: (round(100 * v, 1) if v is not None else None)
                            for k, v in pct.items()},
            }
    if "medsiglip" in result:
        cfg = AutoConfig.from_pretrained(models["medsiglip"]["path"])
        flops = lim.siglip_image_flops(cfg)
        for variant in ("baseline", "ours"):
            for b in result["medsiglip"][variant]["batches"].values():
                ips = b["median"]["images_per_s"]
                b["percent_of_matmul_peak"] = round(100 * flops * ips / peak, 1)
        result["medsiglip"]["image_gflop"] = flops / 1e9


# --- report -----------------------------------------------------------------------------
def _fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "—"
    if unit == "MB":
        return f"{v / 1024:.2f} GiB"
    return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"


def _ratio(base: float | None, ours: float | None, better: str) -> str:
    if not base or not ours:
        return "—"
    return f"{(base / ours if better == 'lower' else ours / base):.2f}×"


def table(report: dict[str, Any]) -> str:
    res, m = report["results"], report["machine"]
    lines = [f"# MedLens CPU benchmark ({report['mode']})", "",
             f"{report['date']} · {m['cpu']} · {m['physical_cores']} physical cores · "
             f"{m['memory_gb']} GB · torch {m['torch']} · transformers {m['transformers']}",
             ""]
    if "read_bandwidth_gbs" in m:
        lines += [f"Machine limits (measured): read bandwidth {m['read_bandwidth_gbs']} GB/s, "
                  f"bf16 matmul {m['bf16_matmul_gflops']} GFLOP/s, fp32 matmul "
                  f"{m['fp32_matmul_gflops']} GFLOP/s; load average at start "
                  f"{m['load_average']}.", ""]
    if set(res) != {"quality"}:
        lines += [f"Settings: {report['settings_text']}", ""]
    if "medgemma" in res:
        g = res["medgemma"]
        b = g["baseline"]
        ours = [v for v in g if v != "baseline"]
        head = "| stage | baseline (plain transformers, bf16) | % of limit |"
        rule = "|---|---|---|"
        for v in ours:
            head += f" {v} (MedLens, {g[v]['weights']}) | % of limit | vs baseline |"
            rule += "---|---|---|"
        lines += [f"## MedGemma ({report['models']['medgemma']['name']}, "
                  f"{report['models']['medgemma']['params']:,} parameters, random weights)", "",
                  head, rule]
        for key, label, unit, better in STAGES:
            bv = b["median"].get(key)
            bp = b.get("limit", {}).get("percent", {}).get(key)
            row = f"| {label} ({unit}) | {_fmt(bv)} | {_fmt(bp) + ' %' if bp else ''} |"
            for v in ours:
                ov = g[v]["median"].get(key)
                op = g[v].get("limit", {}).get("percent", {}).get(key)
                row += f" {_fmt(ov)} | {_fmt(op) + ' %' if op else ''} | {_ratio(bv, ov, better)} |"
            lines.append(row)
        for label, get in (
            ("peak RSS while serving", lambda r: r["median"]["peak_rss_mb"]),
            ("peak RSS incl. loading", lambda r: r["load"]["load_peak_rss_mb"]),
        ):
            lines.append(f"| {label} | {_fmt(get(b), 'MB')} | |"
                         + "".join(f" {_fmt(get(g[v]), 'MB')} | | |" for v in ours))
        lines += ["", "Decode limit (bytes read per token → tok/s at the measured bandwidth): "
                  + "; ".join(f"{v} {g[v]['limit']['decode_bytes_per_token_gb']:.2f} GB → ≤ "
                              f"{g[v]['limit']['decode_tokens_per_s_limit']:.2f} tok/s"
                              for v in g)
                  + f". Vision {b['limit']['vision_gflop']:.0f} GFLOP per image, prefill "
                  f"{b['limit']['prefill_gflop']:.0f} GFLOP.",
                  "Prompt tokens / new tokens per run: " + "; ".join(
                      f"{v} {g[v]['runs'][0]['prompt_tokens']} / {g[v]['runs'][0]['new_tokens']}"
                      for v in g) + ". Images re-encoded by a follow-up question: " + "; ".join(
                      f"{v} {g[v]['runs'][0].get('followup_images_encoded', '—')}" for v in g)
                  + ".", ""]
        if b.get("end_to_end_note"):
            lines += [f"Baseline end-to-end: {b['end_to_end_note']}.", ""]
    if "medsiglip" in res:
        s = res["medsiglip"]
        lines += [f"## MedSigLIP ({report['models']['medsiglip']['name']}, "
                  f"{report['models']['medsiglip']['params']:,} parameters, random weights)", "",
                  "| batch | baseline img/s | % of matmul peak | ours img/s | % of matmul peak | "
                  "ours vs baseline | re-scoring the same images: baseline / ours (s) |",
                  "|---|---|---|---|---|---|---|"]
        for batch, bb in s["baseline"]["batches"].items():
            ob = s["ours"]["batches"][batch]
            lines.append(
                f"| {batch} | {_fmt(bb['median']['images_per_s'])} | "
                f"{bb['percent_of_matmul_peak']} % | {_fmt(ob['median']['images_per_s'])} | "
                f"{ob['percent_of_matmul_peak']} % | "
                f"{_ratio(bb['median']['images_per_s'], ob['median']['images_per_s'], 'higher')}"
                f" | {_fmt(bb['median']['repeat_scoring_s'])} / "
                f"{_fmt(ob['median']['repeat_scoring_s'])} |")
        lines.append("")
    if "quality" in res:
        lines += ["## Quality guard (real Gemma 3 270M, vs its unquantized weights)", "",
                  "| weights | greedy-token agreement | top-1 agreement (teacher forced) | "
                  "mean common prefix (tokens) | max |Δlogit| |", "|---|---|---|---|---|"]
        for mode, q in res["quality"]["modes"].items():
            label = "float32, unquantized (the bf16 noise floor)" if mode == "float32" else (
                f"{mode} weights, bf16 compute")
            lines.append(f"| {label} | {100 * q['greedy_agreement']:.1f} % | "
                         f"{100 * q['top1_agreement']:.1f} % | {q['mean_common_prefix']:.1f} | "
                         f"{q['max_abs_logit_diff']:.2f} |")
        qq = res["quality"]
        lines += ["", f"{qq['prompts']} prompts × {qq['new_tokens']} greedy tokens, reference "
                  f"{qq['reference_dtype']}.", ""]
    lines.append(f"Run time {report['wall_s']:.0f} s."
                 + ("" if set(res) == {"quality"} else
                    f" Medians of {report['settings']['runs']} interleaved runs per figure."))
    return "\n".join(lines) + "\n"


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
        limits(results, mach, models)
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
         + f"; {args.runs} runs")
    if args.stopped_early:
        s += " (fewer runs where --deadline stopped them: see the JSON run lists)"
    if args.baseline_new_tokens and args.baseline_new_tokens != args.new_tokens:
        s += (f"; baseline decoded {args.baseline_new_tokens} tokens per run (its end-to-end "
              f"is extrapolated to {args.new_tokens})")
    return s


if __name__ == "__main__":
    raise SystemExit(main())

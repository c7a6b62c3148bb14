"""The benchmark's markdown report: one table per model, every variant side by side."""

from __future__ import annotations

from typing import Any

STAGES = [  # (key, label, unit, better)
    ("ingest_preprocess_s", "ingest + preprocess", "s", "lower"),
    ("vision_s", "vision encode (tower + projector)", "s", "lower"),
    ("prefill_s", "prefill", "s", "lower"),
    ("vision_prefill_s", "vision encode + prefill", "s", "lower"),
    ("ttft_s", "time to first token", "s", "lower"),
    ("decode_tokens_per_s", "decode", "tok/s", "higher"),
    ("end_to_end_s", "end-to-end study", "s", "lower"),
    ("followup_ttft_s", "follow-up question, first token", "s", "lower"),
]


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


GGUF_NOTE = (
    "llama.cpp rows (gguf-*): MedLens's GGUF backend (llama-cpp-python, libmtmd) on the same "
    "random weights converted with llama.cpp's convert_hf_to_gguf.py; vision projector "
    "(mmproj) in F16. llama.cpp cannot separate the vision encode from the prefill: its "
    "prompt-evaluation counter runs from the first prompt batch to the last and libmtmd "
    "encodes the image in between, so only the vision encode + prefill row is given. "
    "Its follow-up "
    "re-encodes the image and re-evaluates the conversation (llama-cpp-python's libmtmd "
    "handler clears the KV cache on every call)."
)


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
            engine = "MedLens on llama.cpp" if v.startswith("gguf-") else "MedLens"
            head += f" {v} ({engine}, {g[v]['weights']}) | % of limit | vs baseline |"
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
        cos = [f"{v} min {g[v]['image_feature_cosine']['min']:.4f} / mean "
               f"{g[v]['image_feature_cosine']['mean']:.4f}"
               for v in g if "image_feature_cosine" in g[v]]
        if cos:
            lines += ["Image features vs the bf16 baseline (cosine per image token, same "
                      "pixels): " + "; ".join(cos) + ".", ""]
        if any(v.startswith("gguf-") for v in g):
            lines += [GGUF_NOTE, ""]
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
        if "image_feature_cosine" in s["ours"]:
            c = s["ours"]["image_feature_cosine"]
            lines.append(f"\nImage features, ours vs baseline (cosine): min {c['min']:.4f}, "
                         f"mean {c['mean']:.4f}.")
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

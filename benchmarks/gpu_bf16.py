"""The benchmark on a GPU, as one short script: bf16, models built on the device from config.

    python benchmarks/gpu_bf16.py --out $OUT            # medgemma-4b + medsiglip-448 on cuda
    python benchmarks/gpu_bf16.py --quick --device cpu  # small shapes, to check the script

No weights travel: random weights with the exact shapes (benchmarks/shapes.py) are made on
the device. Plain transformers only (the GPU baseline; MedLens's CPU fast path does not apply
on GPU). Prints and writes gpu-bf16.json: per-stage seconds (medians of --runs), decode
tokens/s, MedSigLIP images/s at batch 1 and 8, peak device memory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _build(name: str, device: str) -> Any:
    import shapes
    import torch

    from medlens.models.fastpath.buffers import rebuild_nonpersistent_buffers

    with torch.device("meta"):
        model = shapes.model_class(name)(shapes.build_config(name))
    model = model.to(dtype=torch.bfloat16).to_empty(device=device)
    model.tie_weights()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02) if p.ndim > 1 else p.zero_()
    rebuild_nonpersistent_buffers(model)
    want = shapes.SHAPES[name].params
    got = shapes.count_params(model)
    assert want is None or got == want, (name, got, want)
    return model.eval()


def _sync(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter()


def medgemma(name: str, device: str, runs: int, prompt: int, new: int) -> dict[str, Any]:
    import torch

    model = _build(name, device)
    cfg = model.config
    n_img = cfg.mm_tokens_per_image
    size = cfg.vision_config.image_size
    ids = [2] + [255999] + [cfg.image_token_id] * n_img + [256000] + [236764] * prompt
    input_ids = torch.tensor([ids], device=device)
    pixel = torch.randn(1, 3, size, size, device=device, dtype=torch.bfloat16)
    token_type_ids = (input_ids == cfg.image_token_id).long()
    out: dict[str, list[float]] = {"vision_s": [], "ttft_s": [], "decode_tokens_per_s": [],
                                   "end_to_end_s": []}
    with torch.inference_mode():
        for _ in range(runs + 1):  # the first is warm-up (kernels, allocator)
            t0 = _sync(device)
            model.get_image_features(pixel_values=pixel)
            t1 = _sync(device)
            model.generate(input_ids=input_ids, pixel_values=pixel, token_type_ids=token_type_ids,
                           max_new_tokens=1, do_sample=False)
            t2 = _sync(device)
            model.generate(input_ids=input_ids, pixel_values=pixel, token_type_ids=token_type_ids,
                           max_new_tokens=new, min_new_tokens=new, do_sample=False)
            t3 = _sync(device)
            out["vision_s"].append(t1 - t0)
            out["ttft_s"].append(t2 - t1)
            out["decode_tokens_per_s"].append((new - 1) / max(1e-9, (t3 - t2) - (t2 - t1)))
            out["end_to_end_s"].append(t3 - t2)
    res = {k: statistics.median(v[1:]) for k, v in out.items()}
    res["prompt_tokens"] = len(ids)
    res["new_tokens"] = new
    del model
    return res


def medsiglip(name: str, device: str, runs: int) -> dict[str, Any]:
    import torch

    model = _build(name, device)
    size = model.config.vision_config.image_size
    res: dict[str, Any] = {}
    with torch.inference_mode():
        for batch in (1, 8):
            pixel = torch.randn(batch, 3, size, size, device=device, dtype=torch.bfloat16)
            times = []
            for _ in range(runs + 1):
                t0 = _sync(device)
                model.get_image_features(pixel_values=pixel)
                times.append(_sync(device) - t0)
            res[f"batch{batch}_images_per_s"] = batch / statistics.median(times[1:])
    del model
    return res


def main() -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--prompt-tokens", type=int, default=200)
    p.add_argument("--new-tokens", type=int, default=200)
    p.add_argument("--out", type=Path, default=Path("."))
    args = p.parse_args()
    gemma = "medgemma-quick" if args.quick else "medgemma-4b"
    siglip = "medsiglip-quick" if args.quick else "medsiglip-448"
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
        "torch": torch.__version__, "settings": {k: str(v) for k, v in vars(args).items()},
        "medgemma": medgemma(gemma, args.device, args.runs, args.prompt_tokens, args.new_tokens),
        "medsiglip": medsiglip(siglip, args.device, args.runs),
    }
    if args.device.startswith("cuda"):
        report["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 1e9
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu-bf16.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

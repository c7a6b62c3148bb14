"""Image-tower features of a benchmark worker, for the int8-vs-bf16 fidelity check."""

from __future__ import annotations

from typing import Any


def image_features(worker: Any) -> dict[str, Any]:
    """The image tower's output for the benchmark image, from the HF processor's pixels (the
    same in every variant), as float16 bytes: run.py compares variants by cosine."""
    import base64
    import io

    import torch
    from PIL import Image
    from transformers import AutoProcessor

    image = Image.open(io.BytesIO(worker.data)).convert("RGB")
    # The worker's own processor (a second one would add its tokenizer to the peak RSS).
    owner = getattr(worker, "gen", worker)
    proc = getattr(worker, "image_processor", None) or getattr(
        getattr(owner, "processor", None), "image_processor", None
    ) or AutoProcessor.from_pretrained(worker.spec["path"]).image_processor
    pixels = proc(images=[image], return_tensors="pt")["pixel_values"].to(torch.bfloat16)
    with torch.inference_mode():
        inner = getattr(worker.model, "model", worker.model)
        out = inner.get_image_features(pixel_values=pixels)
    feats = getattr(out, "pooler_output", out).float()
    feats = feats.reshape(-1, feats.shape[-1])  # one row per image token (or image)
    raw = feats.to(torch.float16).numpy().tobytes()
    return {"features_b64": base64.b64encode(raw).decode(), "shape": list(feats.shape)}

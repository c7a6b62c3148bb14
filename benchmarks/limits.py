"""Work per stage (FLOPs, bytes read) from a model's config: the "physical limit" arithmetic.

- vision encode and prefill are compute bound: limit = FLOPs / measured bf16 matmul rate.
- decode is memory bound: limit = bytes read per token / measured read bandwidth; the bytes
  are the decoder's actual weight bytes in the format used (bf16, int8 + scales, ...) plus
  the KV cache read at that context length.
Matmul FLOPs only (2 per multiply-add); norms, activations and softmax are not counted, so
"% of limit" slightly flatters nobody.
"""

from __future__ import annotations

import statistics
from typing import Any


def _vit_flops(vc: Any, tokens: int) -> float:
    h, i, n = vc.hidden_size, vc.intermediate_size, vc.num_hidden_layers
    per_layer = 2 * tokens * (4 * h * h + 2 * h * i) + 4 * tokens * tokens * h
    patch = 2 * tokens * 3 * vc.patch_size**2 * h
    return float(n * per_layer + patch)


def vision_tokens(vc: Any) -> int:
    return int((vc.image_size // vc.patch_size) ** 2)


def medgemma_vision_flops(config: Any) -> float:
    """SigLIP tower at the model's image size + the projector (per image)."""
    vc = config.vision_config
    tc = config.get_text_config()
    proj = 2 * config.mm_tokens_per_image * vc.hidden_size * tc.hidden_size
    return _vit_flops(vc, vision_tokens(vc)) + proj


def siglip_image_flops(config: Any) -> float:
    vc = config.vision_config
    t = vision_tokens(vc)
    # The attention-pooling head: one query over all tokens plus an MLP on it.
    h, i = vc.hidden_size, vc.intermediate_size
    head = 2 * t * 2 * h * h + 2 * (2 * h * h + 2 * h * i)
    return _vit_flops(vc, t) + head


def _attended(tc: Any, layer: int, pos: int) -> int:
    kinds = getattr(tc, "layer_types", None) or ["full_attention"] * tc.num_hidden_layers
    if kinds[layer] == "sliding_attention":
        return min(pos + 1, int(tc.sliding_window))
    return pos + 1


def prefill_flops(config: Any, tokens: int) -> float:
    """Decoder linears for every prompt token + causal attention + one row of logits."""
    tc = config.get_text_config()
    h, i, n = tc.hidden_size, tc.intermediate_size, tc.num_hidden_layers
    qd = tc.num_attention_heads * tc.head_dim
    kvd = tc.num_key_value_heads * tc.head_dim
    linears = 2 * tokens * n * (h * qd * 2 + h * kvd * 2 + 3 * h * i)
    attn = 0
    for layer in range(n):
        ctx = sum(_attended(tc, layer, p) for p in range(tokens))
        attn += 4 * ctx * qd
    head = 2 * h * tc.vocab_size
    return float(linears + attn + head)


def kv_bytes_read(config: Any, context: int, bytes_per_elem: int = 2) -> float:
    """KV cache bytes one decode step reads at `context` tokens (sliding layers capped)."""
    tc = config.get_text_config()
    per_tok = 2 * tc.num_key_value_heads * tc.head_dim * bytes_per_elem
    return float(sum(_attended(tc, layer, context - 1) for layer in range(tc.num_hidden_layers))
                 * per_tok)


def decoder_weight_bytes(model: Any) -> int:
    """Bytes of the text decoder's weights as stored now (tied embedding/head counted once:
    the head reads the whole matrix every step, the embedding lookup one row)."""
    from medlens.models.fastpath.apply import decoder_of, model_bytes

    total = model_bytes(decoder_of(model))
    head = model.get_output_embeddings()
    emb = model.get_input_embeddings()
    head_w = getattr(head, "weight", None)
    if head_w is not None and emb is not None and head_w.data_ptr() != emb.weight.data_ptr():
        total += head_w.numel() * head_w.element_size()
        scale = getattr(head, "scale", None)
        if scale is not None:
            total += scale.numel() * scale.element_size()
    return total


def attach_limits(result: dict[str, Any], machine: dict[str, Any], models: dict[str, Any]) -> None:
    """Attach % of physical limit to each median (in place)."""
    from transformers import AutoConfig

    bw = machine["read_bandwidth_gbs"] * 1e9
    peak = machine["bf16_matmul_gflops"] * 1e9
    if "medgemma" in result:
        cfg = AutoConfig.from_pretrained(models["medgemma"]["path"])
        vis = medgemma_vision_flops(cfg)
        for res in result["medgemma"].values():
            med = res["median"]
            prompt = int(statistics.median(r["prompt_tokens"] for r in res["runs"]))
            new = int(statistics.median(r["new_tokens"] for r in res["runs"]))
            wbytes = res["load"]["decoder_weight_bytes"]
            step = wbytes + kv_bytes_read(cfg, prompt + new // 2)
            pct: dict[str, float | None] = {}
            pct["vision_s"] = vis / med["vision_s"] / peak if med["vision_s"] else None
            pf = prefill_flops(cfg, prompt)
            pct["prefill_s"] = pf / med["prefill_s"] / peak if med["prefill_s"] else None
            both = med.get("vision_prefill_s")
            pct["vision_prefill_s"] = (vis + pf) / both / peak if both else None
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
        flops = siglip_image_flops(cfg)
        for variant in ("baseline", "ours"):
            for b in result["medsiglip"][variant]["batches"].values():
                ips = b["median"]["images_per_s"]
                b["percent_of_matmul_peak"] = round(100 * flops * ips / peak, 1)
        result["medsiglip"]["image_gflop"] = flops / 1e9

"""One decoded token through a Gemma 3 text decoder with less per-token overhead (CPU).

A decode step of MedGemma-4B through transformers' modules spends ~45 ms of ~185 outside
the weight products: module calls and keyword plumbing, mask and position bookkeeping,
and 7 weight products per layer. `FusedStep` runs the same layer maths as a flat loop:

- the same torch ops in the same order and dtypes as Gemma3DecoderLayer (RMSNorm in
  fp32, residuals, RoPE and the activation in the model's dtype), so results are identical
  to transformers' forward on the packed attention the generator switches on
  (tests/models/test_fastpath_step.py compares logits exactly);
- q/k/v and gate/up as one weight product each when they are Int8Linear: their int8
  rows and scales are re-laid as views into one buffer (no extra memory), and the
  compiled GEMV computes each output row independently, so fusing changes no value;
- attention for the one new token regrouped onto the key/value heads (see decode.py).

It serves the decode loop only (one token, batch 1, after a prefill through the model
itself on the same KV cache). `FusedStep.build()` returns None for anything it does not
reproduce exactly (soft-capped attention, another layer layout), and callers then call
the model as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from medlens.models.fastpath.int8 import Int8Linear


@dataclass
class _Layer:
    index: int
    layer_type: str
    norms: tuple[torch.Tensor, ...]  # (1 + w) in fp32: input, post-attn, pre-ff, post-ff
    q_norm: torch.Tensor
    k_norm: torch.Tensor
    qkv: Any  # one module (fused) or a tuple of three
    o_proj: Any
    gate_up: Any  # one module (fused) or a tuple of two
    down_proj: Any
    act: Any  # the MLP's own activation module (gelu-tanh for Gemma 3)
    eps: float


def _fuse(modules: list[nn.Module]) -> nn.Module | None:
    """One Int8Linear whose rows are the modules' rows; the modules become views of it."""
    if not all(type(m) is Int8Linear for m in modules):
        return None
    first: Any = modules[0]
    if any(m.bias is not None for m in modules):
        return None
    if any(m.scale.shape[1:] != first.scale.shape[1:] or m.scale.dtype != first.scale.dtype
           or m.in_features != first.in_features for m in modules):  # fmt: skip
        return None
    weight = torch.cat([m.weight for m in modules])
    scale = torch.cat([m.scale for m in modules])
    start = 0
    for m in modules:  # same values, now slices of the fused buffers
        rows = m.weight.shape[0]
        m.weight = weight[start : start + rows]
        m.scale = scale[start : start + rows]
        start += rows
    return Int8Linear(weight, scale, None, first.small_batch)


def _norm_weight(norm: nn.Module) -> torch.Tensor:
    return 1.0 + norm.weight.float()


class FusedStep:
    """Decode one token: `logits = step(token_id, cache)` (cache prefilled by the model)."""

    def __init__(self, model: nn.Module, decoder: nn.Module, head: nn.Module) -> None:
        self.model = model
        self.decoder = decoder
        self.head = head
        config = decoder.config
        self.config = config
        self.heads = int(config.num_attention_heads)
        self.kv_heads = int(config.num_key_value_heads)
        self.head_dim = int(config.head_dim)
        self.scaling = float(config.query_pre_attn_scalar) ** -0.5
        self.softcap = getattr(config, "final_logit_softcapping", None)
        self.layers: list[_Layer] = []
        self.fused = 0
        for i, layer in enumerate(decoder.layers[: config.num_hidden_layers]):
            attn, mlp = layer.self_attn, layer.mlp
            qkv = _fuse([attn.q_proj, attn.k_proj, attn.v_proj])
            gate_up = _fuse([mlp.gate_proj, mlp.up_proj])
            self.fused += (qkv is not None) + (gate_up is not None)
            self.layers.append(
                _Layer(
                    index=i,
                    layer_type=config.layer_types[i],
                    norms=tuple(
                        _norm_weight(n)
                        for n in (
                            layer.input_layernorm,
                            layer.post_attention_layernorm,
                            layer.pre_feedforward_layernorm,
                            layer.post_feedforward_layernorm,
                        )
                    ),
                    q_norm=_norm_weight(attn.q_norm),
                    k_norm=_norm_weight(attn.k_norm),
                    qkv=qkv or (attn.q_proj, attn.k_proj, attn.v_proj),
                    o_proj=attn.o_proj,
                    gate_up=gate_up or (mlp.gate_proj, mlp.up_proj),
                    down_proj=mlp.down_proj,
                    act=mlp.act_fn,
                    eps=float(layer.input_layernorm.eps),
                )
            )
        self.final_norm = _norm_weight(decoder.norm)
        self.final_eps = float(decoder.norm.eps)
        self.layer_types = sorted(set(config.layer_types))

    @classmethod
    def build(cls, model: nn.Module) -> FusedStep | None:
        """A FusedStep for a Gemma 3 (MedGemma) model on CPU, or None where it does not apply."""
        inner = getattr(model, "model", None)
        decoder = getattr(inner, "language_model", inner)
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        if decoder is None or head is None or type(decoder).__name__ != "Gemma3TextModel":
            return None
        config = decoder.config
        if getattr(config, "attn_logit_softcapping", None) is not None:
            return None
        if getattr(config, "use_bidirectional_attention", False):
            return None
        # Its attention is decode.packed_gqa_sdpa's one-token path: identical results on
        # that implementation, equal to rounding on plain SDPA (which uses enable_gqa).
        if getattr(config, "_attn_implementation", None) not in ("sdpa", "medlens_sdpa"):
            return None
        if any(p.device.type != "cpu" for p in decoder.parameters()):
            return None
        for layer in decoder.layers:
            if type(layer).__name__ != "Gemma3DecoderLayer" or layer.self_attn.training:
                return None
        return cls(model, decoder, head)

    # --- the maths of Gemma3RMSNorm / Gemma3DecoderLayer, op for op --------------------
    @staticmethod
    def _rms(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
        return (h * w).type_as(x)

    @staticmethod
    def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return (x * cos) + (rotated * sin)

    def _attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        # q [1, H, 1, D] -> [1, KV, H/KV, D]: transformers' layout for GQA with a mask,
        # which its SDPA path computes without SDPA's slow enable_gqa kernel (decode.py).
        groups = self.heads // self.kv_heads
        packed = q.reshape(1, self.kv_heads, groups, self.head_dim)
        out = F.scaled_dot_product_attention(packed, k, v, scale=self.scaling)
        return out.reshape(1, 1, self.heads * v.shape[-1])

    def __call__(self, token: int, cache: Any) -> torch.Tensor:
        """Logits [vocab] (fp32 as the model computes them) for `token` at the cache's end."""
        dec = self.decoder
        ids = torch.tensor([[token]])
        position = cache.get_seq_length()
        h = dec.embed_tokens(ids)  # [1, 1, hidden], scaled as in Gemma3TextScaledWordEmbedding
        pos = torch.tensor([[position]])
        rope = {t: dec.rotary_emb(h, pos, t) for t in self.layer_types}
        hd, nh, nkv = self.head_dim, self.heads, self.kv_heads
        for layer in self.layers:
            cos, sin = rope[layer.layer_type]
            cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
            n_in, n_post_attn, n_pre_ff, n_post_ff = layer.norms
            x = self._rms(h, n_in, layer.eps)
            if isinstance(layer.qkv, tuple):
                q, k, v = (m(x) for m in layer.qkv)
            else:
                q, k, v = layer.qkv(x).split((nh * hd, nkv * hd, nkv * hd), dim=-1)
            q = self._rms(q.view(1, 1, nh, hd).transpose(1, 2), layer.q_norm, layer.eps)
            k = self._rms(k.view(1, 1, nkv, hd).transpose(1, 2), layer.k_norm, layer.eps)
            v = v.view(1, 1, nkv, hd).transpose(1, 2)
            q, k = self._rope(q, cos, sin), self._rope(k, cos, sin)
            keys, values = cache.update(k, v, layer.index)
            a = layer.o_proj(self._attention(q, keys, values))
            h = h + self._rms(a, n_post_attn, layer.eps)
            x = self._rms(h, n_pre_ff, layer.eps)
            if isinstance(layer.gate_up, tuple):
                gate, up = (m(x) for m in layer.gate_up)
            else:
                gate, up = layer.gate_up(x).chunk(2, dim=-1)
            y = layer.down_proj(layer.act(gate) * up)
            h = h + self._rms(y, n_post_ff, layer.eps)
        h = self._rms(h, self.final_norm, self.final_eps)
        logits = self.head(h)
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits[0, -1]

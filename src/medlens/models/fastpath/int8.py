"""Weight-only int8 modules for CPU decoding (torch's own kernels, no extra package).

Decode reads every weight once per token, so it is bound by memory bandwidth: int8
weights halve the bytes of bf16. For a few rows (decode) the compiled kernel in
native/ runs at the read bandwidth; without it, `aten._weight_int8pack_mm` (~2/3 of
it, one scale per row only). Prompt-sized inputs de-quantize the weight block by block
(cache-sized) and use bf16 matmuls, ~2.5x faster than the packed kernels there.

Quantization is symmetric, w ~= q * scale with q in [-127, 127], with one scale per
group of `group` input columns of each output row (scale [N, K / group]), or one per
output row (scale [N]). On the real Gemma 3 270M (48 prompts x 32 tokens, simulated
in bf16; the measured guard is benchmarks/results/quality-270m.md) the same weights in
fp32 agree with the bf16 model on 71.2 % of greedy tokens and 97.5 % of teacher-forced
top-1 choices; groups of 64 on 71.0 % / 97.2 %, groups of 128 on 65.0 % / 96.8 %, one
scale per row on 52.0 % / 94.7 %. Groups of 128 are the default: in the decode kernel
they cost ~3 % against one scale per row (64: 5-20 %) and 1.6 % more bytes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from medlens.models.fastpath import native
from medlens.models.fastpath.mapped import release_pages

DEQUANT_BLOCK_ROWS = 1024  # ~2.5-5 MB of bf16 per block at MedGemma widths: stays in L2/L3
QUANT_CHUNK_ELEMENTS = 1 << 20  # fp32 workspace while quantizing: 4 MB, reused for every chunk


def group_for(k: int, group: int) -> int:
    """The group size used for a [*, k] weight: `group` if it tiles k, else k (per row)."""
    if group and group % 64 == 0 and k % group == 0 and group < k:
        return group
    return k


def quantize_int8(
    weight: torch.Tensor, dtype: torch.dtype, group: int = 0, consume: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(q int8 [N, K], scale in `dtype`): [N, K / group], or [N] for one scale per row.

    group=0 (or one that does not tile K in multiples of 64): one scale per output row.
    consume=True: the caller drops `weight` afterwards, so the rows already quantized
    leave RSS as we go when they are memory-mapped from a checkpoint (see mapped.py).

    All the arithmetic runs in place in one small fp32 workspace. Fresh temporaries per
    chunk (16-64 MB each at MedGemma widths) were kept by glibc's allocator after being
    freed and made the loading peak vary by ~the size of the bf16 file from run to run.
    """
    n, k = weight.shape
    g = group_for(k, group)
    ng = k // g
    q = torch.empty((n, k), dtype=torch.int8, device=weight.device)
    scale = torch.empty((n, ng), dtype=dtype, device=weight.device)
    rows = max(1, min(n, QUANT_CHUNK_ELEMENTS // max(k, 1)))
    work = torch.empty((rows, k), dtype=torch.float32, device=weight.device)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        w = work[: stop - start]
        w.copy_(weight[start:stop])
        wg = w.view(stop - start, ng, g)
        amax = torch.maximum(wg.amax(dim=2), wg.amin(dim=2).neg_())
        # Round the scale to the compute dtype first, so q is chosen for the scale
        # that de-quantization will actually use.
        s = (amax / 127.0).clamp_(min=1e-12).to(dtype)
        scale[start:stop] = s
        wg.div_(s.float()[..., None]).round_().clamp_(-127, 127)
        q[start:stop].copy_(w)  # exact: already whole numbers in [-127, 127]
        if consume:
            release_pages(weight[start:stop])
    return q, (scale.reshape(n) if ng == 1 else scale)


def quantize_rows_int8(
    weight: torch.Tensor, dtype: torch.dtype, consume: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """One scale per output row: (q int8 [N, K], scale [N])."""
    return quantize_int8(weight, dtype, 0, consume)


def dequantize_rows(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """q * scale in `dtype` for these rows (scale [rows] or [rows, groups])."""
    w = q.to(dtype)
    if scale.dim() == 1:
        return w * scale[:, None].to(dtype)
    rows, k = q.shape
    ng = scale.shape[1]
    return (w.view(rows, ng, k // ng) * scale[..., None].to(dtype)).view(rows, k)


def int8_matmul(
    x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, small_batch: int
) -> torch.Tensor:
    """x [..., K] @ (q * scale)^T -> [..., N] in x's dtype."""
    k = x.shape[-1]
    x2 = x.reshape(-1, k)
    if x2.dtype != scale.dtype:
        x2 = x2.to(scale.dtype)
    grouped = scale.dim() == 2
    kernel = _native_kernel(x2, q, scale) if x2.shape[0] <= small_batch else None
    if kernel is not None:
        x2 = x2.contiguous()
        out = torch.empty(x2.shape[0], q.shape[0], dtype=x2.dtype, device=x2.device)
        kernel.int8_gemv(x2, q, scale, out, torch.get_num_threads())
    elif x2.shape[0] <= small_batch and not grouped:
        out = torch.ops.aten._weight_int8pack_mm(x2.contiguous(), q, scale)
    elif not grouped:
        out = torch.empty(x2.shape[0], q.shape[0], dtype=x2.dtype, device=x2.device)
        for start in range(0, q.shape[0], DEQUANT_BLOCK_ROWS):
            stop = min(q.shape[0], start + DEQUANT_BLOCK_ROWS)
            out[:, start:stop] = x2 @ q[start:stop].to(x2.dtype).t()
        # Per-row scale of W is a per-column scale of the output: applied once at the end.
        out.mul_(scale)
    else:
        out = torch.empty(x2.shape[0], q.shape[0], dtype=x2.dtype, device=x2.device)
        for start in range(0, q.shape[0], DEQUANT_BLOCK_ROWS):
            stop = min(q.shape[0], start + DEQUANT_BLOCK_ROWS)
            w = dequantize_rows(q[start:stop], scale[start:stop], x2.dtype)
            out[:, start:stop] = x2 @ w.t()
    return out.reshape(*x.shape[:-1], q.shape[0])


def _native_kernel(x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor) -> Any:
    """The compiled decode kernel when it applies to these tensors, else None."""
    if (
        x.shape[0] > native.MAX_ROWS
        or x.device.type != "cpu"
        or x.dtype not in (torch.bfloat16, torch.float32)
        or scale.dtype != x.dtype
        or not q.is_contiguous()
        or not scale.is_contiguous()
    ):
        return None
    return native.load()


class Int8Linear(nn.Module):
    """Drop-in for nn.Linear with int8 weights (buffer `weight`, shape [out, in])."""

    weight: torch.Tensor
    scale: torch.Tensor
    bias: torch.Tensor | None

    def __init__(
        self,
        weight: torch.Tensor,
        scale: torch.Tensor,
        bias: torch.Tensor | None,
        small_batch: int = 4,
    ) -> None:
        super().__init__()
        self.in_features = int(weight.shape[1])
        self.out_features = int(weight.shape[0])
        self.small_batch = small_batch
        self.register_buffer("weight", weight)
        self.register_buffer("scale", scale)
        self.register_buffer("bias", bias)

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, small_batch: int = 4, consume: bool = False, group: int = 0
    ) -> Int8Linear:
        """consume=True: `linear` is discarded afterwards (its mapped pages may be dropped).

        group: input columns per scale (0: one scale per output row).
        """
        dtype = linear.weight.dtype
        q, scale = quantize_int8(linear.weight.detach(), dtype, group, consume)
        bias = linear.bias.detach().clone() if linear.bias is not None else None
        return cls(q, scale, bias, small_batch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = int8_matmul(x, self.weight, self.scale, self.small_batch)
        if self.bias is not None:
            out = out + self.bias
        return out

    def dequantized(self) -> torch.Tensor:
        return dequantize_rows(self.weight, self.scale, self.scale.dtype)

    def extra_repr(self) -> str:
        per = (
            "per-row"
            if self.scale.dim() == 1
            else f"groups of {self.in_features // self.scale.shape[1]}"
        )
        return f"in={self.in_features}, out={self.out_features}, int8 {per}"


class Int8ScaledEmbedding(nn.Module):
    """Gemma's scaled word embedding with int8 rows (shared with an Int8TiedHead)."""

    weight: torch.Tensor
    scale: torch.Tensor

    def __init__(
        self,
        weight: torch.Tensor,
        scale: torch.Tensor,
        embed_scale: float,
        padding_idx: int | None = None,
    ) -> None:
        super().__init__()
        self.num_embeddings = int(weight.shape[0])
        self.embedding_dim = int(weight.shape[1])
        self.padding_idx = padding_idx
        self.scalar_embed_scale = float(embed_scale)
        self.register_buffer("weight", weight)
        self.register_buffer("scale", scale)

    @classmethod
    def from_embedding(
        cls, emb: nn.Embedding, consume: bool = False, group: int = 0
    ) -> Int8ScaledEmbedding:
        """consume=True: `emb` is discarded afterwards (its mapped pages may be dropped)."""
        dtype = emb.weight.dtype
        q, scale = quantize_int8(emb.weight.detach(), dtype, group, consume)
        embed_scale = float(getattr(emb, "scalar_embed_scale", 1.0))
        return cls(q, scale, embed_scale, emb.padding_idx)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        flat = input_ids.reshape(-1)
        rows = dequantize_rows(F.embedding(flat, self.weight), self.scale[flat], self.scale.dtype)
        rows = rows.reshape(*input_ids.shape, self.embedding_dim)
        # Same rounding as Gemma3TextScaledWordEmbedding: the scale in the weights' dtype.
        return rows * torch.tensor(self.scalar_embed_scale, dtype=self.scale.dtype)


class Int8TiedHead(nn.Module):
    """LM head reading the int8 embedding matrix (tied weights stay one copy in memory)."""

    def __init__(self, embedding: Int8ScaledEmbedding, small_batch: int = 4) -> None:
        super().__init__()
        # Not registered as a submodule: the tensors belong to the embedding (one copy in
        # state_dict, `.to()` moves them once).
        object.__setattr__(self, "_embedding", embedding)
        self.small_batch = small_batch
        self.in_features = embedding.embedding_dim
        self.out_features = embedding.num_embeddings

    @property
    def weight(self) -> torch.Tensor:
        emb: Any = self._embedding
        return emb.weight  # type: ignore[no-any-return]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        emb: Any = self._embedding
        return int8_matmul(x, emb.weight, emb.scale, self.small_batch)

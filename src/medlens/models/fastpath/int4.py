"""Weight-only int4 linear layers for CPU decoding (torch's own packed kernel).

Groups of `group_size` input columns share a scale and a zero point (asymmetric,
the convention of `aten._weight_int4pack_mm_for_cpu`): w ~= (q - 8) * scale + zero,
q in [0, 15]. The packed CPU layout stores, for each block of 64 output rows, a
[K, 32] byte matrix whose low nibble is row j and high nibble row j + 32; prompt-sized
inputs unpack that block by block into bf16 matmuls (the packed kernel is ~2.4x slower
than bf16 at prefill sizes).
"""

from __future__ import annotations

import torch
from torch import nn

BLOCK_N = 64  # output rows per block of the packed CPU layout
DEQUANT_BLOCK_ROWS = 1024  # multiple of BLOCK_N
QUANT_CHUNK_ELEMENTS = 1 << 20


def int4_supported(linear: nn.Linear, group_size: int) -> bool:
    """Shapes the packed CPU kernel (and our unpacking) handle."""
    n, k = linear.weight.shape
    return n % BLOCK_N == 0 and k % group_size == 0 and k % 2 == 0


def quantize_groups_int4(
    weight: torch.Tensor, group_size: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """(packed uint8 [N, K/2], scales_and_zeros [K/group, N, 2] in `dtype`)."""
    n, k = weight.shape
    q = torch.empty(n, k, dtype=torch.int32, device=weight.device)
    sz = torch.empty(k // group_size, n, 2, dtype=dtype, device=weight.device)
    # Rows per chunk: bounded fp32 temporaries (~4 MB each) whatever the layer's width.
    rows = max(1, min(n, QUANT_CHUNK_ELEMENTS // max(k, 1)))
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        w = weight[start:stop].float().reshape(stop - start, k // group_size, group_size)
        lo = w.amin(dim=-1)
        hi = w.amax(dim=-1)
        scale = ((hi - lo) / 15.0).clamp(min=1e-12).to(dtype).float()
        zero = (lo + scale * 8.0).to(dtype).float()
        qq = torch.round((w - zero[..., None]) / scale[..., None] + 8.0).clamp_(0, 15)
        q[start:stop] = qq.reshape(stop - start, k).to(torch.int32)
        sz[:, start:stop, 0] = scale.t().to(dtype)
        sz[:, start:stop, 1] = zero.t().to(dtype)
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.contiguous(), 1)
    return packed, sz


def unpack_rows(packed: torch.Tensor, start: int, stop: int, k: int) -> torch.Tensor:
    """q values [stop-start, K] (uint8 0..15) of output rows start:stop (multiples of 64)."""
    nb = (stop - start) // BLOCK_N
    p = packed[start:stop].reshape(nb, k, BLOCK_N // 2)
    q = torch.cat([p & 0xF, p >> 4], dim=-1)  # [nb, K, 64]: rows j and j + 32
    return q.transpose(1, 2).reshape(stop - start, k)


class Int4Linear(nn.Module):
    """Drop-in for nn.Linear with packed int4 weights (buffer `weight`, [out, in/2])."""

    weight: torch.Tensor
    scales_and_zeros: torch.Tensor
    bias: torch.Tensor | None

    def __init__(
        self,
        weight: torch.Tensor,
        scales_and_zeros: torch.Tensor,
        bias: torch.Tensor | None,
        in_features: int,
        group_size: int,
        small_batch: int = 4,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = int(weight.shape[0])
        self.group_size = group_size
        self.small_batch = small_batch
        self.register_buffer("weight", weight)
        self.register_buffer("scales_and_zeros", scales_and_zeros)
        self.register_buffer("bias", bias)

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, group_size: int = 128, small_batch: int = 4
    ) -> Int4Linear:
        dtype = linear.weight.dtype
        packed, sz = quantize_groups_int4(linear.weight.detach(), group_size, dtype)
        bias = linear.bias.detach().clone() if linear.bias is not None else None
        return cls(packed, sz, bias, linear.in_features, group_size, small_batch)

    def dequantized_rows(self, start: int, stop: int, dtype: torch.dtype) -> torch.Tensor:
        k, g = self.in_features, self.group_size
        q = unpack_rows(self.weight, start, stop, k).to(dtype)
        sz = self.scales_and_zeros[:, start:stop]  # [K/g, rows, 2]
        scale = sz[..., 0].t().to(dtype)[..., None]  # [rows, K/g, 1]
        zero = sz[..., 1].t().to(dtype)[..., None]
        w = (q.reshape(stop - start, k // g, g) - 8) * scale + zero
        return w.reshape(stop - start, k)

    def dequantized(self) -> torch.Tensor:
        return self.dequantized_rows(0, self.out_features, self.scales_and_zeros.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, self.in_features)
        if x2.dtype != self.scales_and_zeros.dtype:
            x2 = x2.to(self.scales_and_zeros.dtype)
        if x2.shape[0] <= self.small_batch:
            out = torch.ops.aten._weight_int4pack_mm_for_cpu(
                x2.contiguous(), self.weight, self.group_size, self.scales_and_zeros
            )
        else:
            out = torch.empty(x2.shape[0], self.out_features, dtype=x2.dtype, device=x2.device)
            for start in range(0, self.out_features, DEQUANT_BLOCK_ROWS):
                stop = min(self.out_features, start + DEQUANT_BLOCK_ROWS)
                out[:, start:stop] = x2 @ self.dequantized_rows(start, stop, x2.dtype).t()
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, int4 group={self.group_size}"

"""Int8 compute for image towers on CPU: SigLIP's linear layers on PyTorch's own quantized
kernels (FBGEMM by default, oneDNN on request), int8 activations x int8 weights.

The vision encode is compute bound (MedGemma's tower at 896 px: 4096 patches x 27 layers),
and its bf16 matmuls run at about half the bf16 peak. CPUs with AVX-512 VNNI (or AMX-INT8)
multiply int8 at twice the bf16 rate, so each `nn.Linear` of the tower's encoder layers
becomes `torch.ao.nn.quantized.dynamic.Linear`: weights quantized once per output channel,
activations quantized per call (dynamic range), accumulation in int32, output in float.
Attention itself (softmax(q k^T) v) stays on the bf16 kernel (fastpath/vision.py).

Fidelity is checked, not assumed: image features int8 vs bf16 have cosine >= 0.99 on the
random-weight towers over shared chest X-rays (tests/models/test_fastpath_vision_int8.py)
and the same check runs in the benchmark at full size.

`MEDLENS_VISION_INT8`: `auto` (default: on for bf16 towers where the CPU has VNNI or
AMX-INT8 and PyTorch has a quantized engine), `on` (also float32 towers), `off`. The
MedGemma generator takes it with its decoder's fast path (quantize int8/int4, the CPU
default); weights "as published" (quantize none) keep a bf16 tower.
"""

from __future__ import annotations

import os
import warnings

import torch
from torch import nn

from medlens.errors import ConfigError
from medlens.models.fastpath import native

CHOICES = ("auto", "on", "off")
# Flags (as /proc/cpuinfo spells them) whose int8 dot products beat bf16 matmuls.
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
ENGINES = ("fbgemm", "onednn", "x86")  # preference order; MEDLENS_VISION_INT8_ENGINE picks one


def _engine() -> str | None:
    engines = torch.backends.quantized.supported_engines
    wanted = os.environ.get("MEDLENS_VISION_INT8_ENGINE", "").strip().lower()
    for name in (wanted, *ENGINES):
        if name in engines:
            return name
    return None


def int8_vision_wanted() -> bool:
    """Whether image towers should run their linears in int8 here (MEDLENS_VISION_INT8)."""
    choice = os.environ.get("MEDLENS_VISION_INT8", "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        raise ConfigError(f"MEDLENS_VISION_INT8 must be one of {', '.join(CHOICES)}.")
    if choice == "off" or _engine() is None:
        return False
    return choice == "on" or any(f in native.cpu_flags() for f in INT8_FLAGS)


class Int8VisionLinear(nn.Module):
    """A dynamic-int8 linear that takes and returns the tower's dtype (bf16)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
        from torch.ao.quantization import per_channel_dynamic_qconfig

        float_linear = nn.Linear(linear.in_features, linear.out_features, linear.bias is not None)
        float_linear.weight = nn.Parameter(linear.weight.detach().float(), requires_grad=False)
        if linear.bias is not None:
            float_linear.bias = nn.Parameter(linear.bias.detach().float(), requires_grad=False)
        float_linear.qconfig = per_channel_dynamic_qconfig
        with warnings.catch_warnings():
            # torch flags its quantized-tensor API as moving to torchao; the kernels
            # (oneDNN/FBGEMM) are the same, and users should not see this on every load.
            warnings.simplefilter("ignore", UserWarning)
            self.inner = DynamicLinear.from_float(float_linear)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        out = self.inner(x.reshape(-1, shape[-1]).float())
        return out.reshape(*shape[:-1], self.out_features).to(x.dtype)


def encoder_of(tower: nn.Module) -> nn.Module | None:
    """The stack of transformer layers inside an image tower (SigLIP layouts)."""
    for path in ("encoder", "vision_model.encoder"):
        mod: nn.Module | None = tower
        for attr in path.split("."):
            mod = getattr(mod, attr, None)
        if isinstance(mod, nn.Module):
            return mod
    return None


def use_int8_vision(tower: nn.Module) -> int:
    """Swap the encoder layers' linears for int8 ones in place; returns how many.

    Only on CPU, when `int8_vision_wanted()`, and (unless MEDLENS_VISION_INT8=on) only for
    a bf16 tower: int8 replaces bf16 matmuls; a float32 tower was asked for full precision.
    The patch embedding, the pooling head and the multimodal projector keep their weights.
    """
    encoder = encoder_of(tower)
    if encoder is None or not int8_vision_wanted():
        return 0
    params = list(encoder.parameters())
    if not params or any(p.device.type != "cpu" for p in params):
        return 0
    forced = os.environ.get("MEDLENS_VISION_INT8", "").strip().lower() == "on"
    if params[0].dtype != torch.bfloat16 and not forced:
        return 0
    torch.backends.quantized.engine = _engine()
    swapped = 0
    for parent in list(encoder.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                setattr(parent, name, Int8VisionLinear(child))
                swapped += 1
    if swapped:
        from medlens.models.fastpath.apply import release_freed_memory

        release_freed_memory()  # the bf16 weights and fp32 staging copies just freed
    return swapped

"""apply_fastpath: quantize a loaded Gemma 3 decoder in place for fast CPU decoding.

Only the language model's linear layers (and, optionally, its tied embedding / LM head)
are quantized. The vision tower and the projector stay in bf16: they run once per image
(compute bound, where weight-only quantization does not help) and their numerics feed
every generated token.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from medlens.models.fastpath.int4 import Int4Linear, int4_supported
from medlens.models.fastpath.int8 import Int8Linear, Int8ScaledEmbedding, Int8TiedHead
from medlens.models.fastpath.mapped import release_pages
from medlens.models.fastpath.options import FastPathOptions, parse_options

log = logging.getLogger(__name__)


@dataclass
class FastPathReport:
    """What apply_fastpath did (kept on the model as `model.medlens_fastpath`)."""

    quantize: str = "none"
    threads: int = 0
    linear_int8: int = 0
    linear_int4: int = 0
    head: str = "unchanged"
    bytes_before: int = 0
    bytes_after: int = 0
    skipped: str = ""
    vision_attention: int = 0  # image-tower attention configs on the compiled kernel
    vision_int8: int = 0  # image-tower linears on int8 compute (fastpath/vision_int8.py)
    notes: list[str] = field(default_factory=list)


def decoder_of(model: nn.Module) -> nn.Module:
    """The text decoder (Gemma3ForConditionalGeneration or Gemma3ForCausalLM layouts)."""
    inner = getattr(model, "model", model)
    return getattr(inner, "language_model", inner)


def model_bytes(model: nn.Module) -> int:
    seen: set[int] = set()
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        key = t.data_ptr()
        if key in seen or t.device.type == "meta":
            continue
        seen.add(key)
        total += t.numel() * t.element_size()
    return total


def _set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def quantize_decoder(model: nn.Module, opts: FastPathOptions) -> FastPathReport:
    """Replace the decoder's nn.Linear layers (and head) with int8/int4 modules, in place."""
    report = FastPathReport(quantize=opts.quantize, bytes_before=model_bytes(model))
    decoder = decoder_of(model)
    linears = [(n, m) for n, m in decoder.named_modules() if type(m) is nn.Linear]
    for name, linear in linears:
        new: nn.Module
        if opts.quantize == "int4" and int4_supported(linear, opts.group_size):
            new = Int4Linear.from_linear(linear, opts.group_size, opts.small_batch)
            report.linear_int4 += 1
        else:
            new = Int8Linear.from_linear(
                linear, opts.small_batch, consume=True, group=opts.int8_group_size
            )
            report.linear_int8 += 1
        _set_module(decoder, name, new)
        # The bf16 weight is freed as we go (or, memory-mapped, its pages leave RSS):
        # peak memory stays ~ quantized model + 1 layer.
        release_pages(linear.weight)
        del linear
    if opts.quantize_head:
        report.head = _quantize_head(model, opts)
    report.bytes_after = model_bytes(model)
    return report


def _quantize_head(model: Any, opts: FastPathOptions) -> str:
    head = model.get_output_embeddings()
    emb = model.get_input_embeddings()
    if head is None or type(head) is not nn.Linear:
        return "unchanged"
    tied = emb is not None and head.weight is emb.weight
    if tied and hasattr(emb, "scalar_embed_scale"):
        qemb = Int8ScaledEmbedding.from_embedding(emb, consume=True, group=opts.int8_group_size)
        model.set_input_embeddings(qemb)
        model.set_output_embeddings(Int8TiedHead(qemb, opts.small_batch))
        return "int8 tied embedding + head"
    model.set_output_embeddings(
        Int8Linear.from_linear(head, opts.small_batch, consume=True, group=opts.int8_group_size)
    )
    return "int8 head"


def own_storage(model: nn.Module) -> None:
    """Copy the parameters left in floating point (vision tower, norms) out of the checkpoint.

    transformers memory-maps safetensors files and, when the dtype matches, its tensors point
    into the mapping. Quantizing drops the decoder's bf16 weights, but the mapping lives as
    long as any tensor points into it, and every page read while loading and quantizing
    counts in the process's RSS (7.8 GB of MedGemma-4B's 8.6). Copying the remaining ~0.9 GB
    releases the whole mapping.
    """
    for param in model.parameters():
        old = param.data
        param.data = old.clone()
        release_pages(old)


def release_freed_memory() -> None:
    """Give the heap freed while loading and quantizing back to the OS (glibc malloc_trim).

    Loading leaves many small freed blocks that glibc keeps: 1.2 GB of MedGemma-4B's RSS
    after an int8 load. Not glibc (musl, macOS): nothing to do.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _on_cpu(model: nn.Module) -> bool:
    return all(p.device.type == "cpu" for p in model.parameters())


def apply_fastpath(
    model: nn.Module, options: Mapping[str, Any] | FastPathOptions | None = None
) -> nn.Module:
    """Apply the options (record `options` + MEDLENS_QUANTIZE env) to a loaded model.

    Returns the same model object, modified in place, with `model.medlens_fastpath`
    describing what was done. Quantization is applied on CPU only (the packed kernels
    used are CPU kernels); elsewhere the model is returned unchanged with a note.
    """
    from medlens.models.backends.torch_runtime import configure_threads

    opts = parse_options(options)
    report = FastPathReport(quantize="none", threads=configure_threads())
    if opts.active:
        if not _on_cpu(model):
            report.skipped = "weight-only int8/int4 is a CPU fast path; GPU runs bf16"
            log.info("fastpath: %s", report.skipped)
        else:
            with torch.inference_mode(False), torch.no_grad():
                q = quantize_decoder(model, opts)
                own_storage(model)
            release_freed_memory()
            q.threads = report.threads
            report = q
            log.info(
                "fastpath: %s, %d int8 + %d int4 linear layers, head: %s, %.2f -> %.2f GB",
                opts.quantize,
                q.linear_int8,
                q.linear_int4,
                q.head,
                q.bytes_before / 1e9,
                q.bytes_after / 1e9,
            )
    if _on_cpu(model):
        from medlens.models.fastpath import fast_vision_attention

        report.vision_attention = fast_vision_attention(model, int8=opts.active)
        report.vision_int8 = getattr(model, "medlens_vision_int8", 0)
    model.medlens_fastpath = report  # type: ignore[assignment]
    return model

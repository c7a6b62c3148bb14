"""Vision-tower attention on the compiled bf16 kernel: numerics, dispatch and fallbacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from medlens.models.fastpath import native

torch = pytest.importorskip("torch")
F = torch.nn.functional

HAS_HOST = {"avx512f", "avx512bw", "avx512_bf16"} <= native.cpu_flags()


@pytest.fixture(scope="module")
def attention_kernel(tmp_path_factory):  # type: ignore[no-untyped-def]
    if not HAS_HOST or native._compiler() is None:
        pytest.skip("needs an AVX-512 BF16 CPU and a C compiler")
    mp = pytest.MonkeyPatch()
    mp.setenv("MEDLENS_KERNEL_CACHE", str(tmp_path_factory.mktemp("kernels")))
    mp.delenv("MEDLENS_NATIVE_KERNELS", raising=False)
    # Use it even where torch's kernels are the faster ones (AMX): these test the kernel.
    mp.setenv("MEDLENS_VISION_ATTENTION", "native")
    mp.setenv("MEDLENS_VISION_INT8", "off")  # the int8 linears have their own tests
    native.load_attention.cache_clear()
    kernel = native.load_attention()
    assert kernel is not None
    yield kernel
    mp.undo()
    native.load_attention.cache_clear()


def _qkv(b: int, h: int, t: int, s: int, d: int, seed: int):  # type: ignore[no-untyped-def]
    """[B, H, T, D] views of [B, T, H, D] tensors: the layout transformers passes in."""
    g = torch.Generator().manual_seed(seed)

    def make(n: int) -> torch.Tensor:
        x = torch.randn(b, n, h, d, generator=g) * 1.5
        return x.to(torch.bfloat16).transpose(1, 2)

    return make(t), make(s), make(s)


def _reference(q, k, v, scale: float) -> torch.Tensor:  # type: ignore[no-untyped-def]
    att = (q.double() @ k.double().transpose(-1, -2)) * scale
    return (att.softmax(-1) @ v.double()).transpose(1, 2)  # [B, T, H, D]


@pytest.mark.parametrize(
    ("b", "h", "t", "s", "d"),
    [
        (1, 16, 300, 300, 72),  # SigLIP's head size; a last key tile of 44
        (2, 3, 70, 129, 64),  # more keys than queries, batch of two
        (1, 2, 5, 1, 33),  # one key, odd head size, fewer queries than a block
        (1, 1, 33, 64, 256),  # the widest head it takes
    ],
)
def test_kernel_is_as_accurate_as_torch_sdpa(attention_kernel, b, h, t, s, d) -> None:  # type: ignore[no-untyped-def]
    q, k, v = _qkv(b, h, t, s, d, seed=b + h + t + s + d)
    scale = d**-0.5
    want = _reference(q, k, v, scale)
    out = torch.empty(b, t, h, d, dtype=torch.bfloat16)
    attention_kernel.attention(q, k, v, out, scale, threads=2)
    sdpa = F.scaled_dot_product_attention(q, k, v, scale=scale).transpose(1, 2)
    ours = float((out.double() - want).abs().max())
    theirs = float((sdpa.double() - want).abs().max())
    # bf16 output: both round to 8 significant bits; ours may not be clearly worse.
    assert ours <= max(1.25 * theirs, 2**-8 * float(want.abs().max())), (ours, theirs)


def test_kernel_refuses_heads_wider_than_it_holds(attention_kernel) -> None:  # type: ignore[no-untyped-def]
    q, k, v = _qkv(1, 1, 4, 4, 264, seed=0)
    with pytest.raises(RuntimeError, match="refused"):
        attention_kernel.attention(q, k, v, torch.empty(1, 4, 1, 264, dtype=torch.bfloat16), 0.1, 1)


class _Module(torch.nn.Module):
    is_causal = False
    training = False


def test_vision_attention_uses_the_kernel_only_where_it_applies(attention_kernel) -> None:  # type: ignore[no-untyped-def]
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from medlens.models.fastpath.vision import vision_attention

    module = _Module()
    q, k, v = _qkv(1, 4, 40, 40, 72, seed=1)
    out, weights = vision_attention(module, q, k, v, None, scaling=0.1, dropout=0.0)
    ref, _ = sdpa_attention_forward(module, q, k, v, None, scaling=0.1, dropout=0.0)
    assert weights is None and out.shape == ref.shape == (1, 40, 4, 72)
    assert not torch.equal(out, ref)  # another kernel ...
    assert float((out.float() - ref.float()).abs().max()) < 0.02  # ... the same attention
    # Everything else is transformers' SDPA path itself, value for value.
    mask = torch.zeros(1, 1, 40, 40, dtype=torch.bfloat16)
    mask[..., 30:] = float("-inf")
    for args, kwargs in [
        ((q, k, v, mask), {}),  # a padding mask
        ((q.float(), k.float(), v.float(), None), {}),  # fp32
        ((q, k, v.contiguous().transpose(-1, -2).contiguous().transpose(-1, -2), None), {}),
    ]:
        got, _ = vision_attention(module, *args, scaling=0.1, **kwargs)
        want, _ = sdpa_attention_forward(module, *args, scaling=0.1, **kwargs)
        assert torch.equal(got, want)


def _features(model, pixels):  # type: ignore[no-untyped-def]
    with torch.inference_mode():
        return model.get_image_features(pixel_values=pixels)


def test_tiny_medsiglip_image_features_match_sdpa(
    attention_kernel, tiny_test_models: dict[str, Path]
) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoModel

    from medlens.models.fastpath import fast_vision_attention

    path = tiny_test_models["medsiglip-tiny"]
    model = AutoModel.from_pretrained(path, dtype=torch.bfloat16, attn_implementation="sdpa").eval()
    pixels = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(2)).bfloat16()
    ref = _features(model, pixels)
    ref = getattr(ref, "pooler_output", ref)
    assert fast_vision_attention(model) == 1
    assert model.vision_model.config._attn_implementation == "medlens_vision_sdpa"
    assert model.text_model.config._attn_implementation == "sdpa"  # text keeps its masks
    out = _features(model, pixels)
    out = getattr(out, "pooler_output", out)
    cos = F.cosine_similarity(out.float(), ref.float(), dim=-1)
    assert float(cos.min()) > 0.999, cos


def test_apply_fastpath_switches_the_tiny_medgemma_vision_tower(
    attention_kernel, tiny_test_models: dict[str, Path]
) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoModelForImageTextToText

    from medlens.models.fastpath import apply_fastpath

    path = tiny_test_models["medgemma-tiny"]
    model = AutoModelForImageTextToText.from_pretrained(
        path, dtype=torch.bfloat16, attn_implementation="sdpa"
    ).eval()
    pixels = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(4)).bfloat16()
    with torch.inference_mode():
        ref = model.model.get_image_features(pixel_values=pixels)
    ref = getattr(ref, "pooler_output", ref)
    apply_fastpath(model, {})
    assert model.medlens_fastpath.vision_attention == 1
    assert model.config.get_text_config()._attn_implementation != "medlens_vision_sdpa"
    with torch.inference_mode():
        out = model.model.get_image_features(pixel_values=pixels)
    out = getattr(out, "pooler_output", out)
    cos = F.cosine_similarity(out.float().flatten(1), ref.float().flatten(1), dim=-1)
    assert float(cos.min()) > 0.999, cos


def test_nothing_switches_without_the_kernel(
    monkeypatch, tiny_test_models: dict[str, Path]
) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoModel

    from medlens.models.fastpath import fast_vision_attention

    monkeypatch.setattr(native, "load_attention", lambda: None)
    model = AutoModel.from_pretrained(
        tiny_test_models["medsiglip-tiny"], attn_implementation="sdpa"
    )
    assert fast_vision_attention(model) == 0
    assert model.vision_model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize(
    ("flags", "env", "expected"),
    [
        ({"avx512f", "avx512_bf16"}, None, True),  # AVX512-BF16 without AMX: the kernel
        ({"avx512f", "avx512_bf16", "amx_bf16"}, None, False),  # AMX: torch's oneDNN wins
        ({"avx512f", "avx512_bf16", "amx_bf16"}, "native", True),
        ({"avx512f", "avx512_bf16"}, "torch", False),
    ],
)
def test_kernel_is_chosen_only_where_it_is_faster(monkeypatch, flags, env, expected) -> None:  # type: ignore[no-untyped-def]
    from medlens.models.fastpath.vision import kernel_pays_off

    monkeypatch.setattr(native, "cpu_flags", lambda: set(flags))
    if env is None:
        monkeypatch.delenv("MEDLENS_VISION_ATTENTION", raising=False)
    else:
        monkeypatch.setenv("MEDLENS_VISION_ATTENTION", env)
    assert kernel_pays_off() is expected


def test_unknown_vision_attention_choice_is_a_config_error(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from medlens.errors import ConfigError
    from medlens.models.fastpath.vision import kernel_pays_off

    monkeypatch.setenv("MEDLENS_VISION_ATTENTION", "fastest")
    with pytest.raises(ConfigError, match="MEDLENS_VISION_ATTENTION"):
        kernel_pays_off()


def test_amx_cpus_keep_torchs_attention(monkeypatch, tiny_test_models: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoModel

    from medlens.models.fastpath import fast_vision_attention

    monkeypatch.delenv("MEDLENS_VISION_ATTENTION", raising=False)
    amx = {"avx512f", "avx512bw", "avx512_bf16", "amx_bf16"}
    monkeypatch.setattr(native, "cpu_flags", lambda: amx)
    model = AutoModel.from_pretrained(
        tiny_test_models["medsiglip-tiny"], attn_implementation="sdpa"
    )
    assert fast_vision_attention(model) == 0
    assert model.vision_model.config._attn_implementation == "sdpa"

"""Image-tower linears on int8 compute (fastpath/vision_int8.py): fidelity and dispatch.

Fidelity on the random-weight test towers over shared chest X-rays: image features int8
vs bf16 have cosine >= 0.99 (the full-size towers are checked the same way by the
benchmark, benchmarks/run.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medlens.models.fastpath import native

torch = pytest.importorskip("torch")
F = torch.nn.functional


@pytest.fixture
def int8_on(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MEDLENS_VISION_INT8", "on")
    monkeypatch.setenv("MEDLENS_VISION_ATTENTION", "torch")  # isolate the linears


def _cxr_pixels(paths: list[Path], size: int) -> torch.Tensor:
    import numpy as np
    from PIL import Image

    arrays = []
    for p in paths[:4]:
        img = Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR)
        arrays.append((np.asarray(img, dtype=np.float32) / 127.5 - 1.0).transpose(2, 0, 1))
    return torch.from_numpy(np.stack(arrays)).bfloat16()


def _pooled(out):  # type: ignore[no-untyped-def]
    return getattr(out, "pooler_output", out).float().flatten(1)


def test_medsiglip_tower_int8_matches_bf16_on_chest_xrays(
    int8_on, tiny_test_models: dict[str, Path], nih_images: list[Path]
) -> None:
    from transformers import AutoModel

    from medlens.models.fastpath import fast_vision_attention
    from medlens.models.fastpath.vision_int8 import Int8VisionLinear

    model = AutoModel.from_pretrained(tiny_test_models["medsiglip-tiny"], dtype=torch.bfloat16)
    model.eval()
    size = model.config.vision_config.image_size
    pixels = _cxr_pixels(nih_images, size)
    with torch.inference_mode():
        ref = _pooled(model.get_image_features(pixel_values=pixels))
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in model.vision_model.encoder.modules())
    fast_vision_attention(model)
    assert model.medlens_vision_int8 == n_linear > 0
    assert all(
        not isinstance(m, torch.nn.Linear) or isinstance(p, Int8VisionLinear)
        for p in model.vision_model.encoder.modules()
        for m in p.children()
    )
    with torch.inference_mode():
        out = _pooled(model.get_image_features(pixel_values=pixels))
    assert out.dtype == ref.dtype and out.shape == ref.shape
    cos = F.cosine_similarity(out, ref, dim=-1)
    assert float(cos.min()) >= 0.99, cos
    assert not torch.equal(out, ref)  # really a different (int8) computation


def test_medgemma_tower_int8_matches_bf16_on_chest_xrays(
    int8_on, tiny_test_models: dict[str, Path], nih_images: list[Path]
) -> None:
    from transformers import AutoModelForImageTextToText

    from medlens.models.fastpath import apply_fastpath

    path = tiny_test_models["medgemma-tiny"]
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.bfloat16).eval()
    pixels = _cxr_pixels(nih_images, model.config.vision_config.image_size)
    with torch.inference_mode():
        ref = _pooled(model.model.get_image_features(pixel_values=pixels))
    apply_fastpath(model, {"quantize": "int8"})  # the fast path (the CPU default) takes it
    assert model.medlens_fastpath.vision_int8 > 0
    with torch.inference_mode():
        out = _pooled(model.model.get_image_features(pixel_values=pixels))
    cos = F.cosine_similarity(out, ref, dim=-1)
    assert float(cos.min()) >= 0.99, cos


@pytest.mark.parametrize(
    ("flags", "env", "expected"),
    [
        ({"avx512f", "avx512_vnni"}, None, True),
        ({"avx2", "avx_vnni"}, None, True),
        ({"avx512f", "amx_int8"}, None, True),
        ({"avx2", "fma"}, None, False),  # no fast int8 dot product: bf16/fp32 stays
        ({"avx512f", "avx512_vnni"}, "off", False),
        ({"avx2"}, "on", True),
    ],
)
def test_int8_only_where_the_cpu_has_it(monkeypatch, flags, env, expected) -> None:  # type: ignore[no-untyped-def]
    from medlens.models.fastpath.vision_int8 import int8_vision_wanted

    monkeypatch.setattr(native, "cpu_flags", lambda: set(flags))
    if env is None:
        monkeypatch.delenv("MEDLENS_VISION_INT8", raising=False)
    else:
        monkeypatch.setenv("MEDLENS_VISION_INT8", env)
    assert int8_vision_wanted() is expected


def test_off_keeps_the_tower_unchanged(monkeypatch, tiny_test_models: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoModel

    from medlens.models.fastpath import fast_vision_attention

    monkeypatch.setenv("MEDLENS_VISION_INT8", "off")
    model = AutoModel.from_pretrained(tiny_test_models["medsiglip-tiny"])
    fast_vision_attention(model)
    assert model.medlens_vision_int8 == 0
    assert any(isinstance(m, torch.nn.Linear) for m in model.vision_model.encoder.modules())


def test_unknown_choice_is_a_config_error(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from medlens.errors import ConfigError
    from medlens.models.fastpath.vision_int8 import int8_vision_wanted

    monkeypatch.setenv("MEDLENS_VISION_INT8", "fastest")
    with pytest.raises(ConfigError, match="MEDLENS_VISION_INT8"):
        int8_vision_wanted()


def test_weights_as_published_keep_the_medgemma_tower(
    tiny_test_models: dict[str, Path], monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoModelForImageTextToText

    from medlens.models.fastpath import apply_fastpath

    monkeypatch.delenv("MEDLENS_VISION_INT8", raising=False)
    monkeypatch.delenv("MEDLENS_QUANTIZE", raising=False)
    path = tiny_test_models["medgemma-tiny"]
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.bfloat16).eval()
    apply_fastpath(model, {"quantize": "none"})
    assert model.medlens_fastpath.vision_int8 == 0

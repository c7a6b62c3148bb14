"""Fast CPU path: int8/int4 weight-only layers, apply_fastpath, options, meta-device buffers."""

from __future__ import annotations

from pathlib import Path

import pytest

from medlens.errors import ConfigError
from medlens.models.fastpath.options import FastPathOptions, parse_options

torch = pytest.importorskip("torch")
nn = torch.nn


def _linear(out_f: int, in_f: int, dtype, bias: bool = True, seed: int = 0):  # type: ignore[no-untyped-def]
    torch.manual_seed(seed)
    return nn.Linear(in_f, out_f, bias=bias).to(dtype).requires_grad_(False)


# --- kernels against their own de-quantized weights ------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("rows", [1, 3, 4, 5, 37])
def test_int8_matmul_equals_the_dequantized_reference(dtype: str, rows: int) -> None:
    from medlens.models.fastpath.int8 import Int8Linear

    dt = getattr(torch, dtype)
    lin = _linear(192, 256, dt)
    q = Int8Linear.from_linear(lin, small_batch=4)  # rows <= 4: packed GEMV; more: blocks
    x = torch.randn(2, rows, 256).to(dt)
    ref = x.float() @ q.dequantized().float().t() + lin.bias.float()
    out = q(x)
    assert out.shape == (2, rows, 192) and out.dtype == dt
    tol = 1e-4 if dt == torch.float32 else 3e-2
    assert float((out.float() - ref).abs().max()) < tol * max(1.0, float(ref.abs().max()))


def test_int8_is_close_to_the_original_linear() -> None:
    from medlens.models.fastpath.int8 import Int8Linear, quantize_rows_int8

    lin = _linear(128, 512, torch.float32)
    q, scale = quantize_rows_int8(lin.weight.detach(), torch.float32)
    assert q.dtype == torch.int8 and int(q.abs().max()) == 127  # full range used per row
    # Per-row symmetric rounding: error at most half a step.
    err = (q.float() * scale[:, None] - lin.weight).abs()
    assert bool((err <= scale[:, None] / 2 + 1e-7).all())
    x = torch.randn(3, 512)
    rel = (Int8Linear.from_linear(lin)(x) - lin(x)).norm() / lin(x).norm()
    assert float(rel) < 0.01


def test_grouped_int8_rounds_each_group_within_half_a_step() -> None:
    from medlens.models.fastpath.int8 import group_for, quantize_int8

    torch.manual_seed(3)
    w = torch.randn(96, 512)
    w[:, :64] *= 40  # an outlier block: per-row scales would spend the range on it
    q, scale = quantize_int8(w, torch.float32, group=128)
    assert q.shape == (96, 512) and scale.shape == (96, 4)
    groups = q.float().view(96, 4, 128) * scale[..., None]
    err = (groups - w.view(96, 4, 128)).abs()
    assert bool((err <= scale[..., None] / 2 + 1e-6).all())
    assert int(q.view(96, 4, 128).abs().amax(-1).min()) == 127  # each group uses its range
    q_row, per_row = quantize_int8(w, torch.float32, group=0)
    assert per_row.shape == (96,)
    grouped_err = float((groups.view(96, 512) - w).norm())
    row_err = float((q_row.float() * per_row[:, None] - w).norm())
    assert grouped_err < 0.5 * row_err
    # Groups that do not tile K (or are not multiples of 64) fall back to one per row.
    assert group_for(512, 128) == 128 and group_for(576, 128) == 576
    assert group_for(512, 96) == 512 and group_for(128, 128) == 128 and group_for(64, 0) == 64


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("rows", [1, 4, 9])
@pytest.mark.parametrize("native_kernel", [True, False])
def test_grouped_int8_matmul_equals_the_dequantized_reference(
    dtype: str, rows: int, native_kernel: bool, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from medlens.models.fastpath import native
    from medlens.models.fastpath.int8 import Int8Linear

    if not native_kernel:
        monkeypatch.setattr(native, "load", lambda: None)
    dt = getattr(torch, dtype)
    lin = _linear(192, 512, dt, seed=rows)
    q = Int8Linear.from_linear(lin, small_batch=4, group=64)
    assert q.scale.shape == (192, 8) and "groups of 64" in repr(q)
    x = torch.randn(rows, 512).to(dt)
    ref = x.double() @ q.dequantized().double().t() + lin.bias.double()
    out = q(x)
    assert out.dtype == dt
    tol = 1e-4 if dt == torch.float32 else 3e-2
    assert float((out.double() - ref).abs().max()) < tol * max(1.0, float(ref.abs().max()))


def test_grouped_int8_embedding_reads_its_own_groups() -> None:
    from medlens.models.fastpath.int8 import Int8ScaledEmbedding, Int8TiedHead

    torch.manual_seed(5)
    emb = nn.Embedding(300, 256)
    emb.weight.requires_grad_(False)
    emb.scalar_embed_scale = 16.0
    q = Int8ScaledEmbedding.from_embedding(emb, group=128)
    assert q.scale.shape == (300, 2)
    ids = torch.tensor([[0, 7, 299, 7]])
    want = emb.weight[ids] * 16.0
    got = q(ids)
    assert got.shape == (1, 4, 256)
    assert float((got - want).abs().max()) <= float(q.scale.max()) * 16.0 / 2 + 1e-5
    head = Int8TiedHead(q)
    x = torch.randn(1, 256)
    assert float((head(x) - x @ emb.weight.t()).abs().max()) < 0.02 * float(
        (x @ emb.weight.t()).abs().max()
    )


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("rows", [1, 4, 9])
@pytest.mark.parametrize("group", [32, 128])
def test_int4_matmul_equals_the_dequantized_reference(dtype: str, rows: int, group: int) -> None:
    from medlens.models.fastpath.int4 import Int4Linear

    dt = getattr(torch, dtype)
    lin = _linear(128, 256, dt)
    q = Int4Linear.from_linear(lin, group_size=group, small_batch=4)
    x = torch.randn(rows, 256).to(dt)
    ref = x.float() @ q.dequantized().float().t() + lin.bias.float()
    out = q(x)
    tol = 1e-4 if dt == torch.float32 else 3e-2
    assert float((out.float() - ref).abs().max()) < tol * max(1.0, float(ref.abs().max()))
    # Asymmetric 4-bit groups: within ~one step of the original weights.
    rel = (q.dequantized().float() - lin.weight.float()).norm() / lin.weight.float().norm()
    assert float(rel) < 0.15


def test_int4_unpacking_matches_the_packed_kernel_layout() -> None:
    """The block unpacking used for prompts must read exactly what the packed kernel reads."""
    from medlens.models.fastpath.int4 import Int4Linear

    lin = _linear(192, 128, torch.float32, bias=False)
    q = Int4Linear.from_linear(lin, group_size=32, small_batch=1)
    eye = torch.eye(128)
    # Identity rows through the packed kernel, one at a time, give W^T column by column.
    via_kernel = torch.cat([q(eye[i : i + 1]) for i in range(128)]).t()
    assert torch.allclose(via_kernel, q.dequantized(), atol=1e-5)


def test_int4_refuses_shapes_the_packed_layout_cannot_hold() -> None:
    from medlens.models.fastpath.int4 import int4_supported

    assert int4_supported(_linear(128, 256, torch.float32), 128)
    assert not int4_supported(_linear(100, 256, torch.float32), 128)  # rows % 64
    assert not int4_supported(_linear(128, 96, torch.float32), 128)  # cols % group


# --- options ----------------------------------------------------------------------------
def test_options_default_to_no_quantization() -> None:
    opts = parse_options(None, env={})
    assert opts == FastPathOptions() and not opts.active and opts.quantize == "none"


def test_record_options_and_env_override() -> None:
    rec = {"quantize": "int4", "quantize_group_size": 64, "quantize_head": "false"}
    opts = parse_options(rec, env={})
    assert (opts.quantize, opts.group_size, opts.quantize_head) == ("int4", 64, False)
    opts = parse_options(rec, env={"MEDLENS_QUANTIZE": " INT8 ", "MEDLENS_QUANTIZE_HEAD": "1"})
    assert (opts.quantize, opts.quantize_head, opts.active) == ("int8", True, True)
    assert parse_options(FastPathOptions(quantize="int8"), env={}).quantize == "int8"


def test_int8_group_size_from_record_and_env() -> None:
    assert parse_options(None, env={}).int8_group_size == 128
    assert parse_options({"int8_group_size": 0}, env={}).int8_group_size == 0
    opts = parse_options({"int8_group_size": 256}, env={"MEDLENS_INT8_GROUP_SIZE": "64"})
    assert opts.int8_group_size == 64


@pytest.mark.parametrize(
    ("options", "env", "message"),
    [
        ({"quantize": "fp8"}, {}, "Unknown quantize mode"),
        ({}, {"MEDLENS_QUANTIZE": "q4_k_m"}, "Unknown quantize mode"),
        ({"quantize_group_size": 100}, {}, "group_size"),
        ({"quantize_small_batch": 0}, {}, "small_batch"),
        ({}, {"MEDLENS_QUANTIZE_HEAD": "maybe"}, "true or false"),
        ({"int8_group_size": 100}, {}, "multiple of 64"),
        ({}, {"MEDLENS_INT8_GROUP_SIZE": "-64"}, "multiple of 64"),
        ({}, {"MEDLENS_INT8_GROUP_SIZE": "big"}, "whole number"),
    ],
)
def test_bad_options_are_clear_config_errors(options, env, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        parse_options(options, env=env)


# --- apply_fastpath on the tiny MedGemma ----------------------------------------------
@pytest.fixture(scope="module")
def tiny_dir(tiny_test_models: dict[str, Path]) -> Path:
    return tiny_test_models["medgemma-tiny"]


def _load_tiny(path: Path, dtype):  # type: ignore[no-untyped-def]
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(path, dtype=dtype).eval()


def _logits(model, ids, pixel=None):  # type: ignore[no-untyped-def]
    kwargs = {} if pixel is None else {"pixel_values": pixel}
    with torch.inference_mode():
        return model(input_ids=ids, **kwargs).logits.float()


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_apply_fastpath_keeps_the_tiny_medgemma_close(tiny_dir: Path, mode: str) -> None:
    from medlens.models.fastpath import apply_fastpath
    from medlens.models.fastpath.int4 import Int4Linear
    from medlens.models.fastpath.int8 import Int8Linear, Int8TiedHead

    ref_model = _load_tiny(tiny_dir, torch.float32)
    model = _load_tiny(tiny_dir, torch.float32)
    ids = torch.tensor([[2, 105, 17, 230, 41, 77, 300, 12, 9, 106]])
    ref = _logits(ref_model, ids)
    apply_fastpath(model, {"quantize": mode, "quantize_group_size": 32})
    report = model.medlens_fastpath
    assert report.quantize == mode and report.bytes_after < report.bytes_before
    assert report.head == "int8 tied embedding + head"
    assert isinstance(model.get_output_embeddings(), Int8TiedHead)
    decoder = model.model.language_model
    kinds = {type(m) for m in decoder.modules()}
    assert nn.Linear not in kinds and Int8Linear in kinds
    if mode == "int4":
        assert report.linear_int4 > 0 and Int4Linear in kinds
    # The decoder's formats leave the image tower alone: its encoder linears go to int8
    # compute only where the CPU has it (fastpath/vision_int8.py), its projector never.
    from medlens.models.fastpath.vision_int8 import (
        Int8VisionLinear,
        encoder_of,
    )

    tower_kinds = {type(m) for m in encoder_of(model.model.vision_tower).modules()}
    swapped = False  # a float32 tower keeps full precision (int8 replaces bf16 only)
    assert (Int8VisionLinear in tower_kinds) is swapped
    assert (nn.Linear in tower_kinds) is not swapped
    assert (report.vision_int8 > 0) is swapped
    out = _logits(model, ids)
    rel = float((out - ref).norm() / ref.norm())
    # Random tiny weights are the worst case for 4-bit groups (no outlier structure).
    assert rel < (0.03 if mode == "int8" else 0.3), rel
    agree = float((out.argmax(-1) == ref.argmax(-1)).float().mean())
    assert agree >= (0.8 if mode == "int8" else 0.5)


def test_default_options_leave_the_model_untouched(tiny_dir: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from medlens.models.fastpath import apply_fastpath

    monkeypatch.delenv("MEDLENS_QUANTIZE", raising=False)
    model = _load_tiny(tiny_dir, torch.float32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    apply_fastpath(model, {})
    assert model.medlens_fastpath.quantize == "none"
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_quantized_generator_is_its_own_model_in_provenance(tiny_test_models, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from medlens.config import load_settings
    from medlens.models.protocols import ChatMessage, GenerationConfig, collect
    from medlens.models.session import load_generator

    settings = load_settings()
    monkeypatch.delenv("MEDLENS_QUANTIZE", raising=False)
    plain = load_generator("medlens/test-medgemma", settings)
    monkeypatch.setenv("MEDLENS_QUANTIZE", "int8")
    quant = load_generator("medlens/test-medgemma", settings)
    assert quant is not plain  # a different cached model, not the bf16/fp32 one
    assert plain.info.dtype == "float32" and quant.info.dtype == "float32+int8"
    assert quant.model.medlens_fastpath.linear_int8 > 0
    cfg = GenerationConfig(max_new_tokens=6, min_new_tokens=6)
    msgs = [ChatMessage.text("user", "Describe this X-ray")]
    _text, stats = collect(quant, msgs, cfg)
    assert stats.output_tokens == 6
    assert quant.loglikelihood("The heart", [" is", " was"])[0] < 0


# --- meta-device builds ----------------------------------------------------------------
def _meta_build(cls, config):  # type: ignore[no-untyped-def]
    with torch.device("meta"):
        model = cls(config)
    model.to_empty(device="cpu")
    return model


@pytest.mark.parametrize("name", ["medgemma-tiny", "medsiglip-tiny"])
def test_meta_device_builds_get_their_non_persistent_buffers_back(tiny_test_models, name) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText

    from medlens.models.fastpath.buffers import buffers_state, rebuild_nonpersistent_buffers

    config = AutoConfig.from_pretrained(tiny_test_models[name])
    cls = AutoModelForImageTextToText if name == "medgemma-tiny" else AutoModel
    reference = buffers_state(cls.from_config(config))
    model = _meta_build(type(cls.from_config(config)), config)
    for buf in model.buffers():  # make the garbage visible, whatever to_empty() left
        buf.data.fill_(7 if buf.is_floating_point() else 3)
    fixed = rebuild_nonpersistent_buffers(model)
    assert fixed, "expected rotary / embed_scale / position_ids buffers"
    rebuilt = buffers_state(model)
    assert rebuilt.keys() == reference.keys()
    for key in reference:
        assert torch.equal(rebuilt[key], reference[key]), key


def test_unknown_non_persistent_buffers_fail_loudly() -> None:
    from medlens.models.fastpath.buffers import rebuild_nonpersistent_buffers

    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mystery", torch.zeros(3), persistent=False)

    with pytest.raises(RuntimeError, match="mystery"):
        rebuild_nonpersistent_buffers(nn.Sequential(Odd()))

"""FusedStep: the flat Gemma 3 decode step gives exactly the model's own logits."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")


def _gemma3(dtype, sliding_window: int = 8):  # type: ignore[no-untyped-def]
    """A small random Gemma 3 text decoder: GQA, sliding and full layers, tied head."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(
        vocab_size=1000,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        sliding_window=sliding_window,
        layer_types=["sliding_attention"] * 3 + ["full_attention"],
        attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(config).to(dtype).eval()
    with torch.no_grad():  # larger than the init, so the norms and activations matter
        for p in model.parameters():
            torch.nn.init.normal_(p, std=0.1 if p.dim() > 1 else 0.3)
    return model


def _decode_both_ways(model, step, steps: int = 20):  # type: ignore[no-untyped-def]
    """Greedy tokens from the model's forward, and both logits at every step."""
    from medlens.models.fastpath.decode import growing_cache

    ids = torch.tensor([[5, 17, 230, 41, 77]])
    ours, theirs = growing_cache(model.config), growing_cache(model.config)
    got, want = [], []
    with torch.inference_mode():
        logits = model(input_ids=ids, past_key_values=theirs, use_cache=True).logits[0, -1]
        model(input_ids=ids, past_key_values=ours, use_cache=True)
        for _ in range(steps):
            token = int(logits.argmax())
            logits = model(
                input_ids=torch.tensor([[token]]), past_key_values=theirs, use_cache=True
            ).logits[0, -1]
            want.append(logits)
            got.append(step(token, ours))
    assert ours.get_seq_length() == theirs.get_seq_length() == 5 + steps
    return torch.stack(got), torch.stack(want)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("quantize", ["none", "int8"])
def test_fused_step_logits_equal_the_model_forward(dtype: str, quantize: str) -> None:
    from medlens.models.fastpath import apply_fastpath
    from medlens.models.fastpath.decode import use_packed_attention
    from medlens.models.fastpath.step import FusedStep

    model = _gemma3(getattr(torch, dtype))
    apply_fastpath(model, {"quantize": quantize, "int8_group_size": 64})
    assert use_packed_attention(model.config)  # as load_generator does
    # 5 prompt tokens + 20 steps cross the 8-token window of the sliding layers.
    step = FusedStep.build(model)
    assert step is not None
    assert step.fused == (8 if quantize == "int8" else 0)  # q/k/v and gate/up per layer
    got, want = _decode_both_ways(model, step)
    assert got.dtype == want.dtype
    assert torch.equal(got, want)  # the same ops on the same values


def test_fused_weights_are_views_of_one_buffer() -> None:
    from medlens.models.fastpath import apply_fastpath
    from medlens.models.fastpath.step import FusedStep

    model = _gemma3(torch.float32)
    apply_fastpath(model, {"quantize": "int8"})
    attn = model.model.layers[0].self_attn
    before = [m.weight.clone() for m in (attn.q_proj, attn.k_proj, attn.v_proj)]
    step = FusedStep.build(model)
    assert step is not None
    fused = step.layers[0].qkv
    base = fused.weight.data_ptr()
    offset = 0
    for m, old in zip((attn.q_proj, attn.k_proj, attn.v_proj), before, strict=True):
        assert torch.equal(m.weight, old)  # same values, now inside the fused rows
        assert m.weight.data_ptr() == base + offset
        offset += m.weight.numel()


def test_plain_sdpa_decoder_is_served_too() -> None:
    """On transformers' own SDPA (GQA through enable_gqa) the two agree to rounding."""
    from medlens.models.fastpath.step import FusedStep

    model = _gemma3(torch.float32)
    step = FusedStep.build(model)
    assert step is not None and step.fused == 0
    got, want = _decode_both_ways(model, step, steps=12)
    assert float((got - want).abs().max()) <= 1e-4 * float(want.abs().max())


def test_build_declines_what_it_does_not_reproduce(tiny_test_models: dict[str, Path]) -> None:
    from transformers import AutoModel

    from medlens.models.fastpath.step import FusedStep

    model = _gemma3(torch.float32)
    model.config.attn_logit_softcapping = 50.0
    assert FusedStep.build(model) is None
    model = _gemma3(torch.float32)
    model.config._attn_implementation = "eager"
    assert FusedStep.build(model) is None
    model = _gemma3(torch.float32).train()
    assert FusedStep.build(model) is None
    assert FusedStep.build(AutoModel.from_pretrained(tiny_test_models["medsiglip-tiny"])) is None


def _generator(model, processor, info, fused: bool, monkeypatch):  # type: ignore[no-untyped-def]
    from medlens.models.backends.transformers_generator import TransformersGenerator

    monkeypatch.setenv("MEDLENS_FUSED_STEP", "1" if fused else "0")
    return TransformersGenerator(model, processor, info)


def test_generator_decodes_the_same_text_through_the_fused_step(
    tiny_test_models, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from medlens.config import load_settings
    from medlens.models.protocols import ChatMessage, GenerationConfig, collect
    from medlens.models.session import load_generator

    monkeypatch.setenv("MEDLENS_QUANTIZE", "int8")
    loaded = load_generator("medlens/test-medgemma", load_settings())
    fused = _generator(loaded.model, loaded.processor, loaded.info, True, monkeypatch)
    plain = _generator(loaded.model, loaded.processor, loaded.info, False, monkeypatch)
    assert fused._step is not None and plain._step is None
    calls = []
    step = fused._step
    monkeypatch.setattr(
        fused, "_step", lambda token, cache: calls.append(token) or step(token, cache)
    )
    cfg = GenerationConfig(max_new_tokens=12, min_new_tokens=12)
    msgs = [ChatMessage.text("user", "Describe this chest X-ray")]
    text, stats = collect(fused, msgs, cfg)
    ref_text, ref_stats = collect(plain, msgs, cfg)
    assert stats.output_tokens == ref_stats.output_tokens == 12
    assert len(calls) == 11  # every token after the prefill's first
    assert fused.last_output_ids == plain.last_output_ids
    assert text == ref_text

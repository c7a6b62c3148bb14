"""Decode-step helpers: the in-place KV cache and packed one-token GQA attention."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")


def _load_tiny(path: Path, sliding_window: int):  # type: ignore[no-untyped-def]
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32).eval()
    # A short window, so a 40-token generation crosses it (the fallback path runs too).
    model.config.get_text_config().sliding_window = sliding_window
    return model


def _greedy(model, cache, ids, steps: int):  # type: ignore[no-untyped-def]
    """Greedy tokens and the logits seen at each step, the way the generator decodes."""
    tokens, seen = [], []
    with torch.inference_mode():
        logits = model(
            input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1
        ).logits[0, -1]
        for _ in range(steps):
            token = int(logits.argmax())
            tokens.append(token)
            seen.append(logits.float().clone())
            logits = model(
                input_ids=torch.tensor([[token]]), past_key_values=cache, use_cache=True
            ).logits[0, -1]
    return tokens, torch.stack(seen)


@pytest.fixture(scope="module")
def tiny_dir(tiny_test_models: dict[str, Path]) -> Path:
    return tiny_test_models["medgemma-tiny"]


PROMPT = [[2, 105, 17, 230, 41, 77, 300, 12, 9, 106, 55, 61]]


def test_growing_cache_gives_exactly_the_dynamic_cache_results(tiny_dir: Path) -> None:
    from transformers import DynamicCache

    from medlens.models.fastpath.decode import (
        GrowingLayer,
        GrowingSlidingWindowLayer,
        growing_cache,
    )

    model = _load_tiny(tiny_dir, sliding_window=16)
    config = model.config.get_text_config()
    ids = torch.tensor(PROMPT)
    ref_tokens, ref_logits = _greedy(model, DynamicCache(config=config), ids, 40)
    cache = growing_cache(config)
    assert [type(layer) for layer in cache.layers] == [GrowingSlidingWindowLayer, GrowingLayer]
    tokens, logits = _greedy(model, cache, ids, 40)
    assert tokens == ref_tokens
    assert torch.equal(logits, ref_logits)  # same ops on the same values: bit for bit
    assert cache.get_seq_length() == len(PROMPT[0]) + 40  # prompt + one forward per step


def test_growing_layer_appends_in_place_and_survives_crop() -> None:
    from transformers.cache_utils import DynamicLayer

    from medlens.models.fastpath.decode import MIN_CAPACITY, GrowingLayer

    ours, ref = GrowingLayer(), DynamicLayer()
    torch.manual_seed(0)
    chunks = [torch.randn(1, 2, n, 8) for n in (5, 1, 1, MIN_CAPACITY, 3)]
    ptrs = set()
    for i, k in enumerate(chunks):
        v = k * 2
        got = ours.update(k, v)
        want = ref.update(k, v)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        ptrs.add(got[0].data_ptr())
        if i == 2:
            ours.crop(-2)
            ref.crop(-2)
    # Grown twice at most (capacity doubles), not re-allocated per token.
    assert len(ptrs) <= 2
    ours.reset()
    k = torch.randn(1, 2, 4, 8)
    assert torch.equal(ours.update(k, k)[0], k)


class _Attn(torch.nn.Module):
    def __init__(self, groups: int) -> None:
        super().__init__()
        self.num_key_value_groups = groups
        self.is_causal = True


@pytest.mark.parametrize("q_len", [1, 5])
def test_packed_gqa_attention_matches_transformers_sdpa(q_len: int) -> None:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from medlens.models.fastpath.decode import packed_gqa_sdpa

    torch.manual_seed(1)
    q = torch.randn(1, 8, q_len, 32)
    k = torch.randn(1, 4, 40, 32)
    v = torch.randn(1, 4, 40, 32)
    module = _Attn(groups=2)
    want, _ = sdpa_attention_forward(module, q, k, v, None, scaling=0.125)
    got, _ = packed_gqa_sdpa(module, q, k, v, None, scaling=0.125)
    assert got.shape == want.shape == (1, q_len, 8, 32)
    if q_len == 1:  # regrouped heads: same maths, another kernel
        assert torch.allclose(got, want, atol=1e-5)
    else:  # anything but one unmasked query token is transformers' own path
        assert torch.equal(got, want)


def test_packed_attention_keeps_the_tiny_models_greedy_output(tiny_dir: Path) -> None:
    from transformers import DynamicCache

    from medlens.models.fastpath.decode import ATTENTION_NAME, growing_cache, use_packed_attention

    model = _load_tiny(tiny_dir, sliding_window=512)
    config = model.config.get_text_config()
    ids = torch.tensor(PROMPT)
    ref_tokens, ref_logits = _greedy(model, DynamicCache(config=config), ids, 24)
    assert use_packed_attention(config)
    assert config._attn_implementation == ATTENTION_NAME
    assert model.model.vision_tower.config._attn_implementation == "sdpa"  # text only
    tokens, logits = _greedy(model, growing_cache(config), ids, 24)
    assert tokens == ref_tokens
    assert float((logits - ref_logits).abs().max()) < 1e-4
    assert not use_packed_attention(config)  # already switched: nothing to do

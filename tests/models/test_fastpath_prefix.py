"""Follow-up questions reuse the last conversation's KV cache (fastpath/prefix.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medlens.models.protocols import ChatMessage, GenerationConfig, ImagePart, TextPart, collect

torch = pytest.importorskip("torch")


def _image(seed: int) -> ImagePart:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8), "L").convert("RGB")
    return ImagePart(img, key=f"img-{seed}")


def _study(img: ImagePart) -> list[ChatMessage]:
    return [ChatMessage("system", (TextPart("You are an expert radiologist."),)),
            ChatMessage("user", (img, TextPart("Describe this X-ray")))]


@pytest.fixture(scope="module")
def tiny(tiny_test_models: dict[str, Path]):  # type: ignore[no-untyped-def]
    from medlens.config import load_settings
    from medlens.models.session import load_generator

    return load_generator("medlens/test-medgemma", load_settings())


def _follow_up(gen, img: ImagePart) -> tuple[list[ChatMessage], str]:  # type: ignore[no-untyped-def]
    gen.clear_image_cache()
    first, _ = collect(gen, _study(img), GenerationConfig(max_new_tokens=6, min_new_tokens=6))
    return [*_study(img), ChatMessage.text("assistant", first),
            ChatMessage.text("user", "Is there a pleural effusion?")], first


def test_follow_up_prefills_only_the_new_tokens_and_answers_the_same(tiny) -> None:  # type: ignore[no-untyped-def]
    img = _image(1)
    follow, _ = _follow_up(tiny, img)
    cfg = GenerationConfig(max_new_tokens=8, min_new_tokens=8)
    _, warm = collect(tiny, follow, cfg)
    warm_ids = list(tiny.last_output_ids)
    study_len = len(tiny.build_prompt(_study(img))[0])
    assert warm.timings["prefix_reused_tokens"] >= study_len  # the image block included
    assert warm.prompt_tokens > warm.timings["prefix_reused_tokens"]
    assert warm.images_encoded == 0 and warm.images_cached == 1
    tiny.clear_image_cache()  # the same follow-up, cold: full prefill, image encoded again
    _, cold = collect(tiny, follow, cfg)
    assert cold.timings["prefix_reused_tokens"] == 0 and cold.images_encoded == 1
    assert tiny.last_output_ids == warm_ids


def test_another_image_with_the_same_text_is_not_reused(tiny) -> None:  # type: ignore[no-untyped-def]
    _follow_up(tiny, _image(2))
    # Same token ids (image placeholders look alike), different pixels: a fresh prefill.
    _, stats = collect(tiny, _study(_image(3)), GenerationConfig(max_new_tokens=2))
    assert stats.timings["prefix_reused_tokens"] == 0 and stats.images_encoded == 1


def test_common_length_leaves_a_token_and_never_ends_inside_an_image() -> None:
    from medlens.models.fastpath.prefix import common_length

    assert common_length([1, 2, 3, 4], [1, 2, 3, 9, 9], None) == 3
    assert common_length([1, 2, 3], [1, 2, 3], None) == 2  # one token left to prefill
    assert common_length([1, 7, 7, 5], [1, 7, 7, 6], 7) == 0  # would cut the image block
    assert common_length([], [1, 2], None) == 0

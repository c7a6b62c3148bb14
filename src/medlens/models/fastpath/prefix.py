"""Prefix reuse for follow-up questions: keep the KV cache of the last conversation.

A follow-up question re-sends the whole conversation (system prompt, the image's 256
tokens, the first answer) plus a few new tokens. Recomputing all of it is most of a
follow-up's wait on a CPU (MedGemma-4B: ~500 tokens of prefill). So the generator keeps
the cache of its last generation with the token ids it holds and the images they saw;
a new request that starts with the same ids and the same images (by content key) crops
the cache to the common prefix and prefills only the rest.

Exactness: the prefix's keys/values are the ones a full prefill would compute for the
same tokens in the same positions (causal attention; the image block is bidirectional
only within itself and lies wholly inside the prefix), so the logits match a full
prefill to bf16 rounding. Reuse only happens when every cache layer is one of
fastpath.decode's growing layers and nothing was dropped from a sliding window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medlens.models.fastpath.decode import GrowingLayer, GrowingSlidingWindowLayer


@dataclass
class Prefix:
    """The cache of the last generation and what it holds."""

    ids: list[int]
    image_keys: tuple[str, ...]
    cache: Any
    fed: list[int] = field(default_factory=list)  # tokens decoded into the cache after ids

    @property
    def held(self) -> list[int]:
        return self.ids + self.fed


def common_length(held: list[int], ids: list[int], image_token_id: int | None) -> int:
    """Tokens of `ids` whose cache entries can be reused (at least one is left to prefill;
    0 when the prefix would end inside an image block)."""
    n = 0
    limit = min(len(held), len(ids) - 1)
    while n < limit and held[n] == ids[n]:
        n += 1
    if image_token_id is not None and n and ids[n - 1] == image_token_id:
        return 0
    return n


def crop(cache: Any, length: int) -> bool:
    """Cut every layer back to its first `length` positions, in place; False (cache left
    as it was) when a layer is not a growing one or a sliding window already dropped."""
    layers = list(getattr(cache, "layers", []))
    for layer in layers:
        if not isinstance(layer, GrowingLayer | GrowingSlidingWindowLayer):
            return False
        if not getattr(layer, "is_initialized", False) or not layer._buffer.holds(layer.keys):
            return False
        if isinstance(layer, GrowingSlidingWindowLayer) and (
            layer.cumulative_length > layer.sliding_window - 1 or layer.record_past
        ):
            return False
    for layer in layers:
        layer.keys = layer._buffer.keys[:, :, :length]
        layer.values = layer._buffer.values[:, :, :length]
        if isinstance(layer, GrowingSlidingWindowLayer):
            layer.cumulative_length = length
    return True


def reuse(
    last: Prefix | None, ids: list[int], image_keys: tuple[str, ...], image_token_id: int | None
) -> tuple[Any, int]:
    """(cache cropped to the reusable prefix, its length) or (None, 0) for a fresh prefill."""
    if last is None or last.image_keys != image_keys:
        return None, 0
    n = common_length(last.held, ids, image_token_id)
    if n == 0 or not crop(last.cache, n):
        return None, 0
    return last.cache, n

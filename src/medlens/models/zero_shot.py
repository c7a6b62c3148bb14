"""Zero-shot classification with an Encoder's own learned scale and bias (no torch).

SigLIP logits are `scale * cos(image, text) + bias`. The MedSigLIP card applies a softmax
across the candidate labels; `zero_shot_sigmoid` gives SigLIP's native per-label
probabilities (each independent, useful when several findings can co-exist).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from medlens.models.protocols import Encoder, ImagePart


def zero_shot_logits(
    encoder: Encoder, images: Sequence[ImagePart], texts: Sequence[str]
) -> np.ndarray:
    """(n_images, n_texts) float64 logits."""
    if not texts:
        raise ValueError("zero-shot needs at least one label text")
    img = encoder.embed_images(images).astype(np.float64)
    txt = encoder.embed_texts(texts).astype(np.float64)
    return encoder.logit_scale * (img @ txt.T) + encoder.logit_bias


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


def zero_shot_probs(
    encoder: Encoder, images: Sequence[ImagePart], texts: Sequence[str]
) -> np.ndarray:
    """(n_images, n_texts): softmax across the labels (each row sums to 1)."""
    return softmax(zero_shot_logits(encoder, images, texts), axis=-1)


def zero_shot_sigmoid(
    encoder: Encoder, images: Sequence[ImagePart], texts: Sequence[str]
) -> np.ndarray:
    """(n_images, n_texts): independent sigmoid per label."""
    logits = zero_shot_logits(encoder, images, texts)
    return 1.0 / (1.0 + np.exp(-logits))

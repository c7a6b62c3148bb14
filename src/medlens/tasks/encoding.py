"""Small helpers shared by zero-shot, library and probes: images → encoder input.

Every image reaches the encoder the same way: ingested (imaging front door), then
`medlens.imaging.preprocess.preprocess` with the encoder record's spec, wrapped as an
`ImagePart` keyed by the decoded-pixel hash (so encoders and the library can cache).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from medlens.errors import ConfigError

if TYPE_CHECKING:
    from medlens.imaging.types import IngestedImage
    from medlens.models.protocols import Encoder, ImagePart
    from medlens.models.registry import PreprocessSpec


def encoder_id(encoder: Encoder) -> str:
    """A stable identity for an encoder's embedding space: model id + weights hash.

    Two checkpoints with the same id but different weights must never share cached
    vectors, so the weights hash is part of the key.
    """
    info = encoder.info
    digest = (info.weights_hash or "").split(":")[-1][:16]
    return f"{info.model_id}@{digest}" if digest else info.model_id


def image_parts(images: Sequence[IngestedImage], spec: PreprocessSpec | None) -> list[ImagePart]:
    """Preprocess ingested images for an encoder (key = decoded-pixel hash + spec)."""
    from medlens.imaging.preprocess import preprocess
    from medlens.models.protocols import ImagePart

    if spec is None:
        raise ConfigError("The encoder's registry record has no preprocess spec.")
    spec_tag = hashlib.sha256(repr(spec).encode()).hexdigest()[:8]
    return [
        ImagePart(preprocess(img.image, spec), key=f"{img.pixel_sha256}:{spec_tag}")
        for img in images
    ]


class EncoderParts:
    """Images preprocessed for one encoder, each once per interpretation: the gate and the
    finding scores take the same `ImagePart` (same key), so the encoder's embedding cache
    serves the second and the image tower runs once per image."""

    def __init__(self, spec: PreprocessSpec | None) -> None:
        self.spec = spec
        self._parts: dict[str, ImagePart] = {}

    def __call__(self, images: Sequence[IngestedImage]) -> list[ImagePart]:
        todo = [img for img in images if img.pixel_sha256 not in self._parts]
        if todo:
            for img, part in zip(todo, image_parts(todo, self.spec), strict=True):
                self._parts[img.pixel_sha256] = part
        return [self._parts[img.pixel_sha256] for img in images]

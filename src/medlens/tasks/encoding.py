"""Small helpers shared by zero-shot, library and probes: images → encoder input.

Every image reaches the encoder the same way: ingested (imaging front door), then
`medlens.imaging.preprocess.preprocess` with the encoder record's spec, wrapped as an
`ImagePart` keyed by the decoded-pixel hash (so encoders and the library can cache).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from medlens.errors import BackendUnavailable, ConfigError

if TYPE_CHECKING:
    from medlens.config import Settings
    from medlens.imaging.types import IngestedImage
    from medlens.models.protocols import Encoder, ImagePart
    from medlens.models.registry import ModelRecord, PreprocessSpec


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


def resolve_encoder_record(settings: Settings, model: str | None) -> ModelRecord:
    from medlens.models.registry import load_registry

    return load_registry(settings).resolve(model or settings.encoder, kind="encoder")


def load_encoder_for(settings: Settings, model: str | None) -> tuple[Encoder, ModelRecord]:
    """The encoder named by `model` (or settings.encoder) and its registry record."""
    record = resolve_encoder_record(settings, model)
    try:
        from medlens.models.loader import load_encoder
    except ImportError as exc:  # the backend module is optional (hf extra)
        raise BackendUnavailable(
            "No encoder backend is available (medlens.models.loader); "
            "install the extra with `pip install medlens[hf]`."
        ) from exc
    return load_encoder(record, settings), record

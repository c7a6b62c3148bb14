"""The scores stage: zero-shot finding scores per accepted image, and the image
embeddings that the urgency probe and the similar-case search reuse (the encoder's image
tower runs once per image for all of them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from medlens.tasks.interpret.result import FindingScore, ImageFindingScores

if TYPE_CHECKING:
    from medlens.models.protocols import Encoder
    from medlens.tasks.encoding import EncoderParts
    from medlens.tasks.interpret.study import StudyImage


@dataclass(frozen=True)
class StudyScores:
    """Scores of the accepted images, and which of them is the primary one."""

    blocks: list[ImageFindingScores] = field(default_factory=list)
    embeddings: Any = None  # (n_accepted, dim) float32, or None without an encoder
    primary: int = 0  # position among the accepted images

    @property
    def primary_scores(self) -> dict[str, float]:
        """{label: probability} of the primary image ({} without scores)."""
        if not self.blocks:
            return {}
        return {s.label: s.probability for s in self.blocks[self.primary].scores}

    @property
    def primary_embedding(self) -> Any:
        return None if self.embeddings is None else self.embeddings[self.primary]


def primary_position(images: Sequence[StudyImage]) -> int:
    """The primary image (scores for cross-check, urgency probe, retrieval): the first
    current non-lateral image, else the first one."""
    return next(
        (n for n, img in enumerate(images) if img.timepoint == "current" and img.view != "lateral"),
        0,
    )


def score_images(
    encoder: Encoder,
    images: Sequence[StudyImage],
    indices: Sequence[int],
    label_set_name: str,
    parts: EncoderParts,
) -> StudyScores:
    """Zero-shot scores with `label_set_name` for each image (`indices`: their positions
    in the study), through the one zero-shot function on already computed embeddings."""
    import numpy as np

    from medlens.tasks.classify.zero_shot import load_label_set, zero_shot_embeddings

    label_set = load_label_set(label_set_name)
    emb = np.asarray(encoder.embed_images(parts([i.ingested for i in images])), np.float32)
    per_image = zero_shot_embeddings(encoder, emb, label_set)
    blocks = [
        ImageFindingScores(
            image_index=idx,
            label_set=label_set.name,
            label_set_version=label_set.version,
            scores=[
                FindingScore(label=k, probability=min(1.0, max(0.0, v))) for k, v in probs.items()
            ],
        )
        for idx, probs in zip(indices, per_image, strict=True)
    ]
    return StudyScores(blocks, emb, primary_position(images))

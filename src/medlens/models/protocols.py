"""The two small Protocols every backend implements, and the values they exchange.

Generators take chat messages (any number of images and text parts) and stream text.
Encoders embed images and texts into one L2-normalised space (MedSigLIP).
Images given to backends are already preprocessed by `medlens.imaging.preprocess`
(padded to square, resized to the record's size); backends only normalise/tensorise.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image as PILImage


Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class TextPart:
    text: str
    type: Literal["text"] = "text"


@dataclass(frozen=True)
class ImagePart:
    """A preprocessed image. `key` (content hash) lets backends cache its encoding."""

    image: PILImage.Image
    key: str
    type: Literal["image"] = "image"


Part = TextPart | ImagePart


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: tuple[Part, ...]

    @classmethod
    def text(cls, role: Role, text: str) -> ChatMessage:
        return cls(role, (TextPart(text),))

    @property
    def images(self) -> list[ImagePart]:
        return [p for p in self.content if isinstance(p, ImagePart)]


@dataclass(frozen=True)
class GenerationConfig:
    max_new_tokens: int = 300
    min_new_tokens: int = 0
    # Greedy by default (what the model cards use); temperature > 0 samples.
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass
class GenerationStats:
    """Filled in by the backend while/after streaming."""

    prompt_tokens: int = 0
    output_tokens: int = 0
    images_encoded: int = 0  # vision-tower runs in this call (0 when all were cached)
    images_cached: int = 0
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    finish_reason: str = ""


@dataclass(frozen=True)
class BackendInfo:
    """Provenance of a loaded model."""

    model_id: str
    backend: str  # "transformers", "llamacpp", "openai"
    source: str
    revision: str
    weights_hash: str  # sha256 over weight files (or a server-reported id)
    dtype: str
    device: str
    is_test: bool = False


@runtime_checkable
class Generator(Protocol):
    info: BackendInfo

    def stream(
        self,
        messages: Sequence[ChatMessage],
        config: GenerationConfig,
        stats: GenerationStats | None = None,
    ) -> Iterator[str]:
        """Yield text pieces as they are generated; fills `stats` when given."""
        ...

    def count_tokens(self, text: str) -> int: ...


class StreamingGenerator:
    """Base of the generator backends: `stream` hands `_generate` a stats object to fill
    (the caller's, or a throwaway one), so no backend checks for None."""

    def stream(
        self,
        messages: Sequence[ChatMessage],
        config: GenerationConfig,
        stats: GenerationStats | None = None,
    ) -> Iterator[str]:
        return self._generate(messages, config, stats if stats is not None else GenerationStats())

    def _generate(
        self, messages: Sequence[ChatMessage], config: GenerationConfig, stats: GenerationStats
    ) -> Iterator[str]:
        raise NotImplementedError


@runtime_checkable
class LoglikelihoodScorer(Protocol):
    """Optional generator capability used by the evaluation harness."""

    def loglikelihood(self, context: str, continuations: Sequence[str]) -> list[float]:
        """Sum of log-probabilities of each continuation given the (raw text) context."""
        ...


@runtime_checkable
class Encoder(Protocol):
    info: BackendInfo
    logit_scale: float  # learned temperature (already exp()'d)
    logit_bias: float  # SigLIP's learned bias
    dim: int

    def embed_images(self, images: Sequence[ImagePart]) -> np.ndarray:
        """(N, dim) float32, each row L2-normalised; cached by ImagePart.key."""
        ...

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(N, dim) float32, each row L2-normalised (text padded to max_length)."""
        ...


def collect(
    gen: Generator, messages: Sequence[ChatMessage], config: GenerationConfig
) -> tuple[str, GenerationStats]:
    """Run a generator to completion: (text, stats)."""
    stats = GenerationStats()
    text = "".join(gen.stream(messages, config, stats))
    return text, stats

"""Mock backends for the task tests: a generator with a queue of canned responses (or an
echo mode that answers with its own prompt) and a deterministic fake encoder. Both count
their "vision tower" runs so cache reuse can be asserted."""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from medlens.models.protocols import (
    BackendInfo,
    ChatMessage,
    GenerationConfig,
    GenerationStats,
    ImagePart,
    TextPart,
)

ABNORMAL_REPORT = (
    "Technique: PA chest radiograph.\n"
    "Findings: Large right pleural effusion with adjacent atelectasis. No pneumothorax. "
    "Heart size is normal.\n"
    "Impression: Large right pleural effusion."
)
NORMAL_REPORT = (
    "Technique: PA chest radiograph.\nFindings: The lungs are clear. No pleural effusion or "
    "pneumothorax.\nImpression: No acute cardiopulmonary process."
)


def render(messages: Sequence[ChatMessage]) -> str:
    """A plain rendering of chat messages (the echo mode's answer)."""
    out = []
    for m in messages:
        out.append(f"[{m.role}]")
        for p in m.content:
            out.append(f"<image {p.key}>" if isinstance(p, ImagePart) else p.text)
    return "\n".join(out)


class MockGenerator:
    """Generator Protocol: canned responses (str or fn(messages) -> str), or echo."""

    def __init__(self, responses: Sequence[str | Callable[[Sequence[ChatMessage]], str]] = (),
                 *, echo: bool = False, is_test: bool = True, chunk: int = 7) -> None:
        self.responses = deque(responses)
        self.echo = echo
        self.chunk = chunk
        self.info = BackendInfo(
            model_id="mock/medgemma", backend="mock", source="mock:", revision="rev-1",
            weights_hash="ab" * 32, dtype="float32", device="cpu", is_test=is_test)
        self.calls: list[list[ChatMessage]] = []
        self.encoded: set[str] = set()
        self.vision_calls = 0

    def stream(self, messages: Sequence[ChatMessage], config: GenerationConfig,
               stats: GenerationStats | None = None) -> Iterator[str]:
        self.calls.append(list(messages))
        stats = stats if stats is not None else GenerationStats()
        for key in dict.fromkeys(p.key for m in messages for p in m.images):
            if key in self.encoded:
                stats.images_cached += 1
            else:  # the "vision tower" runs once per new image key
                self.encoded.add(key)
                self.vision_calls += 1
                stats.images_encoded += 1
        if self.echo:
            text = render(messages)
        elif self.responses:
            nxt = self.responses.popleft()
            text = nxt(messages) if callable(nxt) else nxt
        else:
            text = NORMAL_REPORT
        stats.prompt_tokens = sum(len(p.text.split()) for m in messages for p in m.content
                                  if isinstance(p, TextPart))
        for i in range(0, len(text), self.chunk):
            stats.output_tokens += 1
            yield text[i:i + self.chunk]
        stats.finish_reason = "stop"

    def count_tokens(self, text: str) -> int:
        return len(text.split())


class FakeEncoder:
    """Encoder Protocol: deterministic unit vectors from pixel and text hashes."""

    dim = 32
    logit_scale = 10.0
    logit_bias = -5.0

    def __init__(self) -> None:
        self.info = BackendInfo(
            model_id="mock/medsiglip", backend="mock", source="mock:", revision="rev-e",
            weights_hash="cd" * 32, dtype="float32", device="cpu", is_test=True)
        self.image_calls = 0

    @staticmethod
    def _vec(seed: bytes) -> np.ndarray:
        rng = np.random.default_rng(int.from_bytes(hashlib.sha256(seed).digest()[:8], "big"))
        v = rng.standard_normal(FakeEncoder.dim).astype(np.float32)
        return v / np.linalg.norm(v)

    def embed_images(self, images: Sequence[ImagePart]) -> np.ndarray:
        self.image_calls += len(images)
        return np.stack([self._vec(np.asarray(p.image).tobytes()) for p in images])

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._vec(t.encode()) for t in texts])


@pytest.fixture
def mock_generator() -> MockGenerator:
    return MockGenerator()


@pytest.fixture
def fake_encoder() -> FakeEncoder:
    return FakeEncoder()


@pytest.fixture(scope="session")
def cxr_pngs(nih_images: list[Path]) -> list[Path]:
    if len(nih_images) < 3:
        pytest.skip("NIH sample images missing")
    return nih_images[:3]


@pytest.fixture(scope="session")
def cxr_dicom(dicom_dir: Path) -> Path:
    path = dicom_dir / "RG1_J2KI.dcm"
    if not path.is_file():
        pytest.skip("RG1_J2KI.dcm missing")
    return path

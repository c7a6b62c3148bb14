"""A deterministic fake Encoder (protocols.Encoder) for retrieval tests.

Images embed to a fixed random projection of their downsampled pixels (so similar
images get similar vectors); texts embed to a hash-seeded random unit vector, with a
hook (`text_vectors`) to pin specific prompts to chosen vectors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from medlens.models.protocols import BackendInfo, ImagePart


class FakeEncoder:
    def __init__(self, dim: int = 32, *, logit_scale: float = 10.0, logit_bias: float = -5.0,
                 model_id: str = "fake/encoder", weights_hash: str = "f" * 64) -> None:
        self.dim = dim
        self.logit_scale = logit_scale
        self.logit_bias = logit_bias
        self.info = BackendInfo(model_id=model_id, backend="fake", source="fake", revision="0",
                                weights_hash=weights_hash, dtype="float32", device="cpu",
                                is_test=True)
        self._proj = np.random.default_rng(1234).standard_normal((16 * 16, dim)).astype(np.float32)
        self.text_vectors: dict[str, np.ndarray] = {}
        self.text_calls: list[list[str]] = []
        self.image_calls = 0

    def embed_images(self, images: Sequence[ImagePart]) -> np.ndarray:
        self.image_calls += len(images)
        rows = []
        for part in images:
            small = np.asarray(part.image.convert("L").resize((16, 16)), np.float32) / 255.0
            v = (small.reshape(-1) - small.mean()) @ self._proj
            rows.append(v / max(float(np.linalg.norm(v)), 1e-12))
        return np.stack(rows).astype(np.float32)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.text_calls.append(list(texts))
        rows = []
        for t in texts:
            if t in self.text_vectors:
                v = np.asarray(self.text_vectors[t], np.float64)
            else:
                seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")
                v = np.random.default_rng(seed).standard_normal(self.dim)
            rows.append(v / np.linalg.norm(v))
        return np.stack(rows).astype(np.float32)

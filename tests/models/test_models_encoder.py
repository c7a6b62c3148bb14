"""Transformers encoder (SiglipModel) through save -> load (zero-shot: tests/retrieval)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medlens.config import load_settings
from medlens.errors import UnknownModel
from medlens.models.protocols import Encoder, ImagePart

torch = pytest.importorskip("torch")

LABELS = [
    "A chest X-ray with pneumonia.",
    "A normal chest X-ray.",
    "A chest X-ray with a fracture.",
]


def _image(seed: int) -> ImagePart:
    rng = np.random.default_rng(seed)
    return ImagePart(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)),
                     key=f"enc-{seed}")


@pytest.fixture(scope="module")
def encoder(tiny_test_models: dict[str, Path]):  # type: ignore[no-untyped-def]
    from medlens.models.session import load_encoder

    return load_encoder("medlens/test-medsiglip", load_settings())


def test_embeddings_are_unit_norm_float32(encoder) -> None:  # type: ignore[no-untyped-def]
    assert isinstance(encoder, Encoder)
    imgs = encoder.embed_images([_image(1), _image(2), _image(3)])
    txts = encoder.embed_texts(LABELS)
    assert imgs.shape == (3, encoder.dim) and txts.shape == (3, encoder.dim)
    assert imgs.dtype == np.float32 and txts.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(imgs, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(txts, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(imgs[0], imgs[1])  # different images, different embeddings
    assert encoder.embed_images([]).shape == (0, encoder.dim)


def test_image_embeddings_are_cached_by_key(encoder) -> None:  # type: ignore[no-untyped-def]
    encoder.clear_cache()
    before = encoder.images_encoded
    a = encoder.embed_images([_image(10), _image(11)])
    b = encoder.embed_images([_image(11), _image(10), _image(11)])
    assert encoder.images_encoded - before == 2
    np.testing.assert_array_equal(b[0], a[1])
    np.testing.assert_array_equal(b[1], a[0])


def test_text_is_padded_to_max_length(encoder) -> None:  # type: ignore[no-untyped-def]
    # With max_length padding, a text's embedding does not depend on its batch mates.
    alone = encoder.embed_texts(["A normal chest X-ray."])
    batched = encoder.embed_texts(["A normal chest X-ray.", "x " * 40])
    np.testing.assert_allclose(alone[0], batched[0], rtol=1e-5, atol=1e-6)
    tok = encoder.processor.tokenizer(["short"], padding="max_length",
                                      max_length=encoder.max_text_length)
    assert len(tok["input_ids"][0]) == 64


def test_generator_id_is_not_an_encoder() -> None:
    from medlens.models.session import load_encoder

    with pytest.raises(UnknownModel, match="generator"):
        load_encoder("medlens/test-medgemma", load_settings())


def test_gguf_and_openai_sources_cannot_be_encoders(tmp_path: Path) -> None:
    from medlens.errors import SourceNotImplemented
    from medlens.models.session import load_encoder

    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"GGUF")
    with pytest.raises(SourceNotImplemented, match="gguf"):
        load_encoder(f"gguf:{fake}", load_settings())
    with pytest.raises(SourceNotImplemented, match="openai"):
        load_encoder("openai:http://127.0.0.1:9/v1", load_settings())

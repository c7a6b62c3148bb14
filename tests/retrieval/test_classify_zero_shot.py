"""Zero-shot label sets: loading, template averaging (checked by hand), scoring, caching."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import pytest
from PIL import Image

from medlens.errors import ConfigError
from medlens.models.protocols import BackendInfo, ImagePart
from medlens.tasks.classify import zero_shot as classify
from medlens.tasks.classify.zero_shot import (
    average_prompts,
    builtin_label_sets,
    load_label_set,
    parse_label_set,
    zero_shot,
)


class PinnedEncoder:
    """Every text and image vector chosen by the test (so results can be hand-computed)."""

    def __init__(self, texts: dict[str, list[float]], image: list[float], *,
                 scale: float = 10.0, bias: float = -3.0, model_id: str = "pinned") -> None:
        self.texts = {k: np.asarray(v, np.float32) for k, v in texts.items()}
        self.image = np.asarray(image, np.float32)
        self.dim = len(image)
        self.logit_scale = scale
        self.logit_bias = bias
        self.info = BackendInfo(model_id, "fake", "fake", "0", "h" * 64, "float32", "cpu", True)
        self.text_calls = 0

    def embed_images(self, images: Sequence[ImagePart]) -> np.ndarray:
        v = self.image / np.linalg.norm(self.image)
        return np.stack([v for _ in images])

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.text_calls += 1
        return np.stack([self.texts[t] / np.linalg.norm(self.texts[t]) for t in texts])


def _part() -> ImagePart:
    return ImagePart(Image.new("RGB", (8, 8)), key="k")


def test_builtin_label_sets_load_with_templates() -> None:
    assert set(builtin_label_sets()) >= {"cxr", "dermatology", "pathology", "fundus"}
    cxr = load_label_set("cxr")
    assert cxr.mode == "multilabel"
    assert len(cxr.labels) == 14  # the CheXpert observations
    assert "Pleural Effusion" in cxr.label_names and "No Finding" in cxr.label_names
    for lab in cxr.labels:  # multi-label: every finding is positive-vs-negative
        assert len(lab.positive) >= 3 and len(lab.negative) >= 3, lab.name
        assert not set(lab.positive) & set(lab.negative)
    assert cxr.label("Pleural Effusion").aliases == ("Effusion",)
    for name in ("dermatology", "pathology", "fundus"):
        s = load_label_set(name)
        assert s.mode == "multiclass" and len(s.labels) >= 5
        assert all(len(lab.positive) >= 2 for lab in s.labels)


def test_template_expansion() -> None:
    s = parse_label_set({
        "name": "t", "version": "1", "mode": "multilabel",
        "templates": {"positive": ["X with {text}.", "{text}"], "negative": ["no {text}"]},
        "labels": [{"name": "A", "text": ["alpha", "a1"], "positive": ["extra A"]}],
    })
    lab = s.labels[0]
    assert lab.positive == ("X with alpha.", "alpha", "extra A", "X with a1.", "a1")
    assert lab.negative == ("no alpha", "no a1")


def test_average_prompts_by_hand() -> None:
    out = average_prompts(np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 5.0]]))
    s = 1 / math.sqrt(2)
    np.testing.assert_allclose(out, [s, 0.0, s], atol=1e-7)


def _two_prompt_set(mode: str = "multilabel") -> dict:
    labels = [{"name": "A", "use_default_templates": False,
               "positive": ["a1", "a2"], "negative": ["n1", "n2"]}]
    if mode == "multiclass":
        labels = [{"name": "A", "positive": ["a1", "a2"]}, {"name": "B", "positive": ["b1"]}]
    return {"name": "hand", "version": "1", "mode": mode, "labels": labels}


def test_multilabel_positive_vs_negative_by_hand() -> None:
    enc = PinnedEncoder(
        {"a1": [1, 0, 0], "a2": [0, 3, 0], "n1": [0, 0, 1], "n2": [0, 0, 7]},
        image=[1, 0, 0], scale=10.0, bias=-3.0,
    )
    probs = zero_shot(enc, [_part()], parse_label_set(_two_prompt_set()))
    # positive mean of (1,0,0) and (0,1,0) renormalised = (1,1,0)/√2 -> cos 1/√2;
    # negative = (0,0,1) -> cos 0. Pair softmax: 1/(1+exp(-10*(0.70711 - 0))) = 0.999151
    assert probs[0]["A"] == pytest.approx(0.999151, abs=1e-6)


def test_multiclass_softmax_by_hand() -> None:
    enc = PinnedEncoder({"a1": [1, 0, 0], "a2": [0, 1, 0], "b1": [0, 0, 1]},
                        image=[1, 0, 1], scale=4.0, bias=-10.0)
    probs = zero_shot(enc, [_part(), _part()], parse_label_set(_two_prompt_set("multiclass")))
    # image (1,0,1)/√2: cos(A) = 1/2, cos(B) = 1/√2; bias cancels in the softmax.
    expected_a = 1 / (1 + math.exp(4.0 * (1 / math.sqrt(2) - 0.5)))
    assert probs[0]["A"] == pytest.approx(expected_a, abs=1e-6)  # 0.303978 (float32 vectors)
    assert probs[0]["A"] + probs[0]["B"] == pytest.approx(1.0)
    assert probs[1] == probs[0]


def test_label_without_negatives_uses_siglip_sigmoid() -> None:
    enc = PinnedEncoder({"a1": [1, 0]}, image=[1, 0], scale=5.0, bias=-2.0)
    s = parse_label_set({"name": "s", "version": "1", "mode": "multilabel",
                         "labels": [{"name": "A", "positive": ["a1"]}]})
    assert zero_shot(enc, [_part()], s)[0]["A"] == pytest.approx(1 / (1 + math.exp(-3.0)))


def test_text_embeddings_cached_per_encoder_and_label_set_content() -> None:
    classify.clear_cache()
    texts = {"a1": [1, 0, 0], "a2": [0, 1, 0], "n1": [0, 0, 1], "n2": [0, 1, 1]}
    enc = PinnedEncoder(texts, image=[1, 0, 0])
    ls = parse_label_set(_two_prompt_set())
    zero_shot(enc, [_part()], ls)
    zero_shot(enc, [_part()], ls)
    assert enc.text_calls == 1
    edited = _two_prompt_set()
    edited["labels"][0]["negative"] = ["n2"]  # same name + version, different content
    zero_shot(enc, [_part()], parse_label_set(edited))
    assert enc.text_calls == 2
    other = PinnedEncoder(texts, image=[1, 0, 0], model_id="other")
    zero_shot(other, [_part()], ls)
    assert other.text_calls == 1


def test_user_label_set_files(tmp_path) -> None:
    toml = tmp_path / "mine.toml"
    toml.write_text('name = "mine"\nversion = "2"\nmode = "multiclass"\n'
                    '[templates]\npositive = ["photo of {text}"]\n'
                    '[[labels]]\nname = "Cat"\n[[labels]]\nname = "Dog"\n', "utf-8")
    s = load_label_set(str(toml))
    assert s.label_names == ["Cat", "Dog"] and s.labels[0].positive == ("photo of cat",)
    js = tmp_path / "mine.json"
    js.write_text(json.dumps(_two_prompt_set()), "utf-8")
    assert load_label_set(str(js)).labels[0].negative == ("n1", "n2")


@pytest.mark.parametrize("bad, message", [
    ({"version": "1", "mode": "multilabel", "labels": [{"name": "A", "positive": ["x"]}]},
     "missing 'name'"),
    ({"name": "b", "version": "1", "mode": "binary", "labels": []}, "mode must be"),
    ({"name": "b", "version": "1", "mode": "multiclass",
      "labels": [{"name": "A", "positive": ["x"]}]}, "at least two"),
    ({"name": "b", "version": "1", "mode": "multilabel", "labels": [{"name": "A"}]},
     "no positive prompts"),
    ({"name": "b", "version": "1", "mode": "multilabel",
      "labels": [{"name": "A", "positive": ["x"], "colour": "red"}]}, "unknown key"),
])
def test_bad_label_sets_rejected(bad: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_label_set(bad)


def test_unknown_builtin_lists_known_sets() -> None:
    with pytest.raises(ConfigError, match="Built-in sets: cxr"):
        load_label_set("nonexistent")


def _one_prompt_per_label(texts: list[str], mode: str) -> dict:
    return {"name": "texts", "version": "1", "mode": mode,
            "labels": [{"name": t, "positive": [t]} for t in texts]}


def test_zero_shot_is_siglips_own_logits_with_the_tiny_model(tiny_test_models: dict) -> None:
    """Moved from tests/models (models/zero_shot.py is gone): with one prompt per label the
    one zero-shot function gives softmax / sigmoid of SiglipModel's own logits_per_image
    (scale.exp() * cos + bias)."""
    torch = pytest.importorskip("torch")
    from medlens.config import load_settings
    from medlens.models.session import load_encoder

    encoder = load_encoder("medlens/test-medsiglip", load_settings())
    labels = ["A chest X-ray with pneumonia.", "A normal chest X-ray.",
              "A chest X-ray with a fracture."]
    rng = np.random.default_rng(20)
    images = [ImagePart(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)),
                        key=f"zs-{n}") for n in range(2)]
    probs = zero_shot(encoder, images, parse_label_set(_one_prompt_per_label(labels,
                                                                              "multiclass")))
    sig = zero_shot(encoder, images, parse_label_set(_one_prompt_per_label(labels,
                                                                            "multilabel")))
    inputs = encoder.processor(text=labels, images=[im.image for im in images],
                               padding="max_length", return_tensors="pt")
    with torch.inference_mode():
        ref = encoder.model(**inputs).logits_per_image.numpy().astype(np.float64)
    soft = np.exp(ref - ref.max(axis=1, keepdims=True))
    soft /= soft.sum(axis=1, keepdims=True)
    got = np.array([[p[t] for t in labels] for p in probs])
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-9)
    np.testing.assert_allclose(got, soft, rtol=1e-3, atol=1e-4)
    got_sig = np.array([[p[t] for t in labels] for p in sig])
    assert ((got_sig > 0) & (got_sig < 1)).all()
    np.testing.assert_allclose(got_sig, 1 / (1 + np.exp(-ref)), rtol=1e-3, atol=1e-4)
    assert encoder.logit_scale == pytest.approx(10.0, rel=1e-5)
    assert encoder.logit_bias == pytest.approx(-10.0)


def test_image_kind_set_is_the_gates_softmax() -> None:
    s = load_label_set("image-kind")
    assert s.mode == "multiclass" and s.label_names[0] == "chest X-ray"
    assert s.label("chest X-ray").positive == (
        "a chest X-ray", "a frontal chest radiograph", "a chest radiograph")

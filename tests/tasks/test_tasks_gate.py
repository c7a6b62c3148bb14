"""The gate's encoder half (tasks.interpret.gate): zero-shot over the `image-kind` label set
with the one zero-shot function, on the scorer's own image part."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medlens.imaging.gate import GateDecision, require_chest_xray
from medlens.imaging.ingest import ingest
from medlens.models.protocols import BackendInfo
from medlens.models.registry import PreprocessSpec
from medlens.tasks.encoding import image_parts
from medlens.tasks.interpret.gate import gate_chest_xray


class FakeEncoder:
    """A deterministic encoder: images embed as their mean brightness direction, texts by
    whether they mention a chest X-ray. Checks the gate's zero-shot arithmetic only."""

    logit_scale = 10.0
    logit_bias = 0.0
    dim = 2

    def __init__(self, chest_like: bool, is_test: bool = False) -> None:
        self.chest_like = chest_like
        self.info = BackendInfo("fake/enc", "fake", "fake", "0", "x", "float32", "cpu", is_test)
        self.calls = 0
        self.keys: list[str] = []

    def embed_images(self, images):
        self.calls += 1
        self.keys.extend(p.key for p in images)
        v = np.array([1.0, 0.0] if self.chest_like else [0.0, 1.0], np.float32)
        return np.stack([v for _ in images])

    def embed_texts(self, texts):
        return np.stack(
            [np.array([1.0, 0.0] if "chest" in t else [0.0, 1.0], np.float32) for t in texts]
        )


def test_zero_shot_path_accepts_and_refuses(shared_data: Path) -> None:
    f = sorted((shared_data / "cxr" / "nih_cxr14_sample" / "images").glob("*.png"))[0]
    img = ingest(f)
    yes = gate_chest_xray(img, encoder=FakeEncoder(chest_like=True))  # type: ignore[arg-type]
    assert yes.accepted and yes.method == "zero-shot"
    no = gate_chest_xray(img, encoder=FakeEncoder(chest_like=False))
    assert not no.accepted and "chest X-ray p=" in no.reason


def test_test_encoder_is_not_trusted(shared_data: Path) -> None:
    f = sorted((shared_data / "cxr" / "nih_cxr14_sample" / "images").glob("*.png"))[0]
    enc = FakeEncoder(chest_like=False, is_test=True)
    decision = gate_chest_xray(ingest(f), encoder=enc)
    assert decision.accepted and enc.calls == 0


def test_gate_embeds_the_scorers_image_part(nih_images: list[Path]) -> None:
    img, spec = ingest(nih_images[0]), PreprocessSpec(48, pad_value="zero", antialias=False)
    enc = FakeEncoder(chest_like=True)
    assert gate_chest_xray(img, encoder=enc, spec=spec).accepted
    part = image_parts([img], spec)[0]
    assert enc.keys == [part.key]  # the finding scores' key: the embedding cache hits
    enc.keys.clear()
    assert gate_chest_xray(img, encoder=enc, part=part).accepted and enc.keys == [part.key]


def test_pixel_decision_made_at_intake_is_not_made_again(nih_images: list[Path]) -> None:
    img = ingest(nih_images[0])
    refused = GateDecision(False, "refused at intake")
    enc = FakeEncoder(chest_like=True)
    assert gate_chest_xray(img, encoder=enc, pixel=refused) is refused and enc.calls == 0
    intake = require_chest_xray(img)
    both = gate_chest_xray(img, encoder=enc, pixel=intake)
    assert both.accepted and both.method == "zero-shot"
    assert both.checks[: len(intake.checks)] == intake.checks and enc.calls == 1


def test_dicom_is_judged_by_its_tags_not_the_encoder(dicom_dir: Path) -> None:
    enc = FakeEncoder(chest_like=False)
    decision = gate_chest_xray(ingest(dicom_dir / "RG1_J2KI.dcm"), encoder=enc)
    assert decision.accepted and decision.method == "dicom-tags" and enc.calls == 0


def test_imaging_gate_takes_no_encoder(nih_images: list[Path]) -> None:
    with pytest.raises(TypeError, match=r"tasks\.interpret\.gate"):
        enc = FakeEncoder(chest_like=True)
        require_chest_xray(ingest(nih_images[0]), encoder=enc)  # type: ignore[arg-type]

"""Each model's vision tower runs once per image for a whole study (issue 17, point 3).

Real tiny test models through the real loader; forward hooks on the vision towers count
the images each forward pass actually encodes (not a fake's own bookkeeping).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medlens.config import load_settings
from medlens.imaging.ingest import ingest
from medlens.models.registry import load_registry
from medlens.tasks.interpret.conversation import Conversation
from medlens.tasks.interpret.pipeline import InterpretOptions, interpret
from medlens.tasks.interpret.study import Study

pytest.importorskip("torch")


@dataclass
class Counter:
    images: int = 0
    calls: int = 0

    def hook(self, _module: Any, _args: Any, output: Any) -> None:
        self.calls += 1
        hidden = output[0] if isinstance(output, tuple) else output.last_hidden_state
        self.images += int(hidden.shape[0])


@pytest.fixture
def models(tiny_test_models: dict) -> Iterator[dict[str, Any]]:
    from medlens.models.session import load_encoder, load_generator

    settings = load_settings()
    reg = load_registry(settings)
    gen_rec, enc_rec = reg.get("medlens/test-medgemma"), reg.get("medlens/test-medsiglip")
    gen, enc = load_generator(gen_rec, settings), load_encoder(enc_rec, settings)
    gen_tower = getattr(gen.model, "vision_tower", None) or gen.model.model.vision_tower
    siglip, medgemma = Counter(), Counter()
    handles = [enc.model.vision_model.register_forward_hook(siglip.hook),
               gen_tower.register_forward_hook(medgemma.hook)]
    try:
        yield {"gen": gen, "enc": enc, "gen_rec": gen_rec, "enc_rec": enc_rec,
               "siglip": siglip, "medgemma": medgemma}
    finally:
        for h in handles:
            h.remove()


def test_one_tower_call_per_image_for_the_whole_study(models: dict, tmp_path: Path,
                                                       cxr_pngs: list[Path]) -> None:
    """gate + scores + similar cases + urgency probe: 1 MedSigLIP image; report + two
    follow-ups: 1 MedGemma image."""
    from medlens.tasks.classify.probes import Probe, save_probe
    from medlens.tasks.retrieval.cases_csv import CaseInput
    from medlens.tasks.retrieval.library import CaseLibrary

    gen, enc, siglip, medgemma = models["gen"], models["enc"], models["siglip"], models["medgemma"]
    probe = Probe(name="urgent", label="urgent", version="1", encoder_id=enc.info.model_id,
                  weights=np.zeros(enc.dim), bias=-5.0, calib_a=1.0, calib_b=0.0,
                  threshold=0.5)
    opts = InterpretOptions.from_records(
        models["gen_rec"], models["enc_rec"], max_new_tokens=4, similar_k=2,
        urgent_probe=str(save_probe(probe, tmp_path / "probes")))
    study = Study.from_ingested([ingest(cxr_pngs[0])])
    with CaseLibrary.open(load_settings(data_dir=tmp_path)) as lib:
        lib.add_cases(enc, models["enc_rec"],
                      [CaseInput(p, f"c{i}") for i, p in enumerate(cxr_pngs[1:])])
        enc.clear_cache()  # cold caches: the session keeps models across tests
        gen.clear_image_cache()
        siglip.images = siglip.calls = medgemma.images = medgemma.calls = 0
        r = interpret(study, opts, generator=gen, encoder=enc, library=lib)
    assert r.status == "complete" and [g.accepted for g in r.gate] == [True]
    assert len(r.finding_scores) == 1 and r.urgency is not None and r.urgency.probe is not None
    assert r.similar_cases is not None and len(r.similar_cases) == 2
    assert (siglip.calls, siglip.images) == (1, 1)
    assert (medgemma.calls, medgemma.images) == (1, 1)
    conv = Conversation.start(study, r, opts)
    turns = [conv.ask(gen, "Is there an effusion?"), conv.ask(gen, "Any pneumothorax?")]
    assert [t.images_encoded for t in turns] == [0, 0]
    assert (medgemma.calls, medgemma.images) == (1, 1)
    assert siglip.calls == 1


def test_the_gates_encoder_check_and_the_scores_share_one_tower_call(
        models: dict, cxr_pngs: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """A trusted encoder's gate embeds the image the scores then reuse (same key)."""
    from medlens.tasks.encoding import EncoderParts
    from medlens.tasks.interpret.gate import gate_images
    from medlens.tasks.interpret.scoring import score_images

    enc, siglip = models["enc"], models["siglip"]
    # The tiny encoder's random weights are not trusted by the gate; pretend they are, to
    # run its zero-shot check (whatever it decides, the image is scored below).
    monkeypatch.setattr(enc, "info", replace(enc.info, is_test=False))
    study = Study.from_ingested([ingest(cxr_pngs[0])])
    parts = EncoderParts(models["enc_rec"].preprocess)
    enc.clear_cache()
    siglip.images = siglip.calls = 0
    warnings: list[str] = []
    records, images = gate_images(study, enc, True, warnings, parts)
    assert siglip.images == 1  # the gate's zero-shot ran the tower
    assert records[0].accepted or "chest X-ray p=" in records[0].reason
    scores = score_images(enc, images, [0], "cxr", parts)
    assert len(scores.blocks[0].scores) == 14 and scores.embeddings.shape == (1, enc.dim)
    assert (siglip.calls, siglip.images) == (1, 1)  # scores: a cache hit

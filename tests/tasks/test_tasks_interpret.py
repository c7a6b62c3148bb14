"""interpret(): every Interpretation field, multi-image studies, refusal, streaming."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from medlens.disclaimer import DISCLAIMER, TEST_MODEL_LABEL
from medlens.imaging.ingest import ingest
from medlens.models.registry import PreprocessSpec
from medlens.tasks.interpret.pipeline import InterpretOptions, interpret, interpret_events
from medlens.tasks.interpret.result import Interpretation
from medlens.tasks.interpret.study import Study, StudyContext, StudyImage

from .conftest import ABNORMAL_REPORT, FakeEncoder, MockGenerator

OPTS = InterpretOptions(generator_preprocess=PreprocessSpec(64),
                        encoder_preprocess=PreprocessSpec(48, pad_value="zero", antialias=False))


def _study(paths: list[Path], priors: list[Path] = (), laterals: list[Path] = (),
           **ctx: str) -> Study:
    return Study.from_ingested([ingest(p) for p in paths], priors=[ingest(p) for p in priors],
                               laterals=[ingest(p) for p in laterals],
                               context=StudyContext(**ctx))


def test_every_field_is_filled(cxr_pngs: list[Path]) -> None:
    gen, enc = MockGenerator([ABNORMAL_REPORT]), FakeEncoder()
    study = _study(cxr_pngs[:1], indication="cough for 3 weeks", age="60-69", sex="female")
    r = interpret(study, OPTS, generator=gen, encoder=enc)
    assert r.status == "complete" and r.study_id == study.study_id and r.language == "en"
    # report
    assert r.report is not None and r.report.parse_quality == "structured"
    assert r.report.raw_text == ABNORMAL_REPORT
    assert r.report.technique == "PA chest radiograph."
    assert "pleural effusion" in r.report.findings.lower()
    assert r.report.impression == "Large right pleural effusion."
    # scores: the 14 CheXpert labels, probabilities in [0, 1]
    assert len(r.finding_scores) == 1 and r.finding_scores[0].label_set == "cxr"
    scores = r.scores_for(0)
    assert len(scores) == 14 and all(0.0 <= p <= 1.0 for p in scores.values())
    # cross-check: assertions from the labeler; disagreements follow the documented rules
    cc = r.cross_check
    assert cc is not None and cc.checked and cc.source_text == "report"
    by_label = {a.label: a for a in cc.assertions}
    assert by_label["Pleural Effusion"].status == "positive"
    assert by_label["Pleural Effusion"].laterality == "right"
    assert by_label["Pneumothorax"].status == "negative"
    for d in cc.disagreements:
        s = scores[d.label]
        assert d.score == s
        if d.kind == "report_positive_score_low":
            assert s < cc.low_threshold and by_label[d.label].status == "positive"
        elif d.kind == "score_high_report_negative":
            assert s >= cc.high_threshold
        else:
            assert s >= cc.high_threshold and d.label not in by_label
    # urgency: large effusion is urgent (rule U03)
    assert r.urgency is not None and r.urgency.level == "urgent"
    assert "U03" in [x.rule_id for x in r.urgency.reasons]
    # gate, provenance, disclaimer
    assert [g.accepted for g in r.gate] == [True]
    p = r.provenance
    assert p.generator.model_id == "mock/medgemma" and p.generator.revision == "rev-1"
    assert p.generator.weights_hash == "ab" * 32
    assert p.encoder.model_id == "mock/medsiglip"
    assert p.prompt.name.startswith("cxr-report") and p.prompt.version == "1.0"
    assert p.prompt.prompt_format == "medgemma-v1"
    assert p.inputs[0].sha256 == study.images[0].ingested.sha256
    assert {"gate", "preprocess", "scores", "prompt", "generate", "parse", "crosscheck",
            "urgency", "total"} <= set(p.timings)
    assert p.generation.images_encoded == 1 and p.generation.output_tokens > 0
    assert p.test_model is True and r.test_model_label == TEST_MODEL_LABEL
    assert r.disclaimer == DISCLAIMER and r.requires_verification
    assert r.context_used == ["indication", "age", "sex"]
    assert r.similar_cases is None and r.language_check is None
    # JSON round trip
    again = Interpretation.from_json(r.to_json())
    assert again == r
    json.loads(r.to_json())


def test_generator_gets_preprocessed_images_keyed_by_pixels(cxr_pngs: list[Path]) -> None:
    gen = MockGenerator([ABNORMAL_REPORT])
    study = _study(cxr_pngs[:1])
    interpret(study, OPTS, generator=gen, encoder=None)
    (system, user) = gen.calls[0]
    assert system.role == "system" and system.content[0].text == "You are an expert radiologist."
    # v1 order: text first, then the image
    assert user.content[0].type == "text" and user.content[1].type == "image"
    img = user.images[0]
    assert img.image.size == (64, 64) and img.image.mode == "RGB"
    assert img.key == f"{study.images[0].ingested.pixel_sha256}:64"


def test_medgemma_15_order_image_first_no_system(cxr_pngs: list[Path]) -> None:
    gen = MockGenerator([ABNORMAL_REPORT])
    opts = InterpretOptions(prompt_format="medgemma-1.5", generator_preprocess=PreprocessSpec(64))
    interpret(_study(cxr_pngs[:1]), opts, generator=gen)
    (user,) = gen.calls[0]
    assert user.role == "user"
    assert [p.type for p in user.content] == ["image", "text"]
    assert user.content[1].text.startswith("You are an expert radiologist.")


def test_two_image_study_frontal_and_lateral(cxr_pngs: list[Path]) -> None:
    gen, enc = MockGenerator([ABNORMAL_REPORT]), FakeEncoder()
    r = interpret(_study(cxr_pngs[:1], laterals=cxr_pngs[1:2]), OPTS, generator=gen,
                  encoder=enc)
    assert r.status == "complete"
    assert r.provenance.prompt.name.startswith("cxr-lateral")
    user = gen.calls[0][-1]
    assert len(user.images) == 2
    assert "image 1: current chest radiograph; image 2: current lateral chest radiograph" \
        in user.content[0].text
    assert [g.view for g in r.gate] == ["unknown", "lateral"]
    assert len(r.finding_scores) == 2 and enc.image_calls == 2


def test_three_image_study_with_prior(cxr_pngs: list[Path], cxr_dicom: Path) -> None:
    gen, enc = MockGenerator([ABNORMAL_REPORT]), FakeEncoder()
    study = Study.from_ingested([ingest(cxr_dicom), ingest(cxr_pngs[0])],
                                priors=[ingest(cxr_pngs[1])])
    r = interpret(study, OPTS, generator=gen, encoder=enc)
    assert r.status == "complete" and len(r.gate) == 3
    assert r.provenance.prompt.name.startswith("cxr-comparison")
    user = gen.calls[0][-1]
    assert len(user.images) == 3
    text = user.content[0].text
    assert "image 1: current frontal chest radiograph" in text  # DICOM ViewPosition PA
    assert "image 3: prior chest radiograph" in text
    assert "image 1 DICOM description: THORAX" in text  # untrusted tag in the data section
    assert [i.format for i in r.provenance.inputs] == ["dicom", "png", "png"]
    assert len({i.sha256 for i in r.provenance.inputs}) == 3


def test_refused_image_never_gets_a_report(dicom_dir: Path) -> None:
    gen = MockGenerator([ABNORMAL_REPORT])
    r = interpret(_study([dicom_dir / "CT_small.dcm"]), OPTS, generator=gen)
    assert r.status == "refused" and r.report is None and r.urgency is None
    assert gen.calls == []  # the generator never ran
    assert not r.gate[0].accepted and "CT" in r.gate[0].reason
    assert r.disclaimer == DISCLAIMER


def test_refused_image_is_left_out_of_a_mixed_study(cxr_pngs: list[Path],
                                                    dicom_dir: Path) -> None:
    gen = MockGenerator([ABNORMAL_REPORT])
    r = interpret(_study([cxr_pngs[0], dicom_dir / "MR_small.dcm"]), OPTS, generator=gen)
    assert r.status == "complete" and [g.accepted for g in r.gate] == [True, False]
    assert len(gen.calls[0][-1].images) == 1


def test_thinking_is_stripped_and_streamed_without_thought(cxr_pngs: list[Path]) -> None:
    gen = MockGenerator(["<unused94>thought: maybe effusion<unused95>" + ABNORMAL_REPORT])
    events = []
    opts = InterpretOptions(generator_preprocess=PreprocessSpec(64), thinking=True)
    r = interpret(_study(cxr_pngs[:1]), opts, generator=gen, on_event=events.append)
    assert r.report.raw_text == ABNORMAL_REPORT
    streamed = "".join(e.text for e in events if e.kind == "token")
    assert "thought" not in streamed and streamed.strip() == ABNORMAL_REPORT
    system = gen.calls[0][0].content[0].text
    assert system.startswith("SYSTEM INSTRUCTION: think silently if needed.")


def test_event_iterator_streams_stages_tokens_then_result(cxr_pngs: list[Path]) -> None:
    gen = MockGenerator([ABNORMAL_REPORT], chunk=5)
    events = list(interpret_events(_study(cxr_pngs[:1]), OPTS, generator=gen,
                                   encoder=FakeEncoder()))
    kinds = [e.kind for e in events]
    assert kinds[-1] == "result" and isinstance(events[-1].result, Interpretation)
    stages = [e.stage for e in events if e.kind == "stage"]
    assert stages[:5] == ["gate", "preprocess", "scores", "prompt", "generate"]
    tokens = [e.text for e in events if e.kind == "token"]
    assert len(tokens) > 10 and "".join(tokens) == ABNORMAL_REPORT
    assert kinds.index("token") > kinds.index("stage")
    assert json.dumps(events[-1].to_dict())  # SSE-serialisable


def test_event_iterator_reraises_errors(cxr_pngs: list[Path]) -> None:
    def boom(messages):
        raise RuntimeError("backend exploded")

    it = interpret_events(_study(cxr_pngs[:1]), OPTS, generator=MockGenerator([boom]))
    with pytest.raises(RuntimeError, match="exploded"):
        for _ in it:
            pass


def test_closing_the_iterator_early_cancels(cxr_pngs: list[Path]) -> None:
    gen = MockGenerator(["x" * 5000], chunk=1)
    it = interpret_events(_study(cxr_pngs[:1]), OPTS, generator=gen)
    for ev in it:
        if ev.kind == "token":
            break
    it.close()  # must return promptly (the worker stops at its next event)


def test_no_encoder_means_no_scores_and_unchecked(cxr_pngs: list[Path]) -> None:
    events = []
    r = interpret(_study(cxr_pngs[:1]), OPTS, generator=MockGenerator([ABNORMAL_REPORT]),
                  on_event=events.append)
    assert r.finding_scores == [] and r.cross_check is not None
    assert not r.cross_check.checked and r.urgency.level == "urgent"
    assert any("No encoder" in w for w in r.warnings)
    assert [e.text for e in events if e.kind == "warning"] == r.warnings


def test_custom_prompt_is_recorded_by_hash(cxr_pngs: list[Path]) -> None:
    gen = MockGenerator(["Lungs clear."])
    opts = InterpretOptions(generator_preprocess=PreprocessSpec(64), prompt="List the devices.")
    r = interpret(_study(cxr_pngs[:1]), opts, generator=gen)
    assert gen.calls[0][-1].content[0].text.startswith("List the devices.")
    assert r.provenance.prompt.name.startswith("custom") and len(r.provenance.prompt.version) == 12
    assert r.report.parse_quality == "unstructured" and r.report.findings == "Lungs clear."


def test_urgent_probe_hook(tmp_path: Path, cxr_pngs: list[Path]) -> None:
    import numpy as np

    from medlens.tasks.classify.probes import Probe, save_probe

    enc = FakeEncoder()
    probe = Probe(name="urgent", label="urgent", version="1", encoder_id="mock",
                  weights=np.ones(enc.dim), bias=50.0, calib_a=1.0, calib_b=0.0, threshold=0.5)
    path = save_probe(probe, tmp_path)
    opts = InterpretOptions(generator_preprocess=PreprocessSpec(64),
                            encoder_preprocess=PreprocessSpec(48), urgent_probe=str(path))
    normal = "Findings: Lungs are clear. No pneumothorax.\nImpression: Normal chest radiograph."
    r = interpret(_study(cxr_pngs[:1]), opts, generator=MockGenerator([normal]), encoder=enc)
    assert r.urgency.probe is not None and r.urgency.probe.fired
    assert r.urgency.level == "urgent" and r.urgency.reasons[0].rule_id == "P01"


def test_broken_probe_file_is_a_warning(tmp_path: Path, cxr_pngs: list[Path]) -> None:
    bad = tmp_path / "urgent.json"
    bad.write_text("{not json")
    opts = InterpretOptions(generator_preprocess=PreprocessSpec(64),
                            encoder_preprocess=PreprocessSpec(48), urgent_probe=str(bad))
    r = interpret(_study(cxr_pngs[:1]), opts, generator=MockGenerator([ABNORMAL_REPORT]),
                  encoder=FakeEncoder())
    assert r.status == "complete" and r.urgency.probe is None and r.urgency.level == "urgent"
    assert any(w.startswith("Urgency probe not used") for w in r.warnings)


def test_similar_cases_from_a_library(cxr_pngs: list[Path]) -> None:
    class Library:
        def search_image(self, embedding, k):
            assert embedding.shape == (FakeEncoder.dim,)
            return [{"case_id": "c1", "score": 0.9, "labels": {"Pneumothorax": 1, "Edema": 0}}]

    r = interpret(_study(cxr_pngs[:1]), OPTS, generator=MockGenerator([ABNORMAL_REPORT]),
                  encoder=FakeEncoder(), library=Library())
    assert r.similar_cases and r.similar_cases[0].case_id == "c1"
    assert r.similar_cases[0].labels == ["Pneumothorax"]


def test_similar_cases_from_the_real_case_library(tmp_path: Path, cxr_pngs: list[Path]) -> None:
    from medlens.config import load_settings
    from medlens.models.registry import load_registry
    from medlens.tasks.retrieval.cases_csv import CaseInput
    from medlens.tasks.retrieval.library import CaseLibrary

    settings = load_settings(data_dir=tmp_path)
    record = load_registry(settings).get("medlens/test-medsiglip")
    enc = FakeEncoder()
    with CaseLibrary.open(settings) as lib:
        lib.add_cases(enc, record, [
            CaseInput(p, f"case{i}", {"Pleural Effusion": i % 2}) for i, p in enumerate(cxr_pngs)])
        opts = InterpretOptions(generator_preprocess=PreprocessSpec(64),
                                encoder_preprocess=record.preprocess, similar_k=2)
        r = interpret(_study(cxr_pngs[1:2]), opts, generator=MockGenerator([ABNORMAL_REPORT]),
                      encoder=enc, library=lib)
    assert r.similar_cases is not None and len(r.similar_cases) == 2
    top = r.similar_cases[0]
    assert top.case_id == "case1" and top.score == pytest.approx(1.0, abs=1e-4)
    assert top.labels == ["Pleural Effusion"]


def test_wrong_modality_answer_is_flagged(cxr_pngs: list[Path]) -> None:
    gen = MockGenerator(["This image is not a chest X-ray; it shows a knee."])
    r = interpret(_study(cxr_pngs[:1]), OPTS, generator=gen)
    assert any("not a chest X-ray" in w for w in r.warnings)


def test_every_field_with_the_tiny_test_models(tiny_test_models: dict, tmp_path: Path,
                                               cxr_pngs: list[Path], cxr_dicom: Path) -> None:
    """Real loader + transformers backends: every Interpretation field is produced."""
    import numpy as np

    from medlens.config import load_settings
    from medlens.models.registry import load_registry
    from medlens.models.session import load_encoder, load_generator
    from medlens.tasks.classify.probes import Probe, save_probe
    from medlens.tasks.retrieval.cases_csv import CaseInput
    from medlens.tasks.retrieval.library import CaseLibrary

    settings = load_settings(data_dir=tmp_path)
    reg = load_registry(load_settings())
    gen_rec, enc_rec = reg.get("medlens/test-medgemma"), reg.get("medlens/test-medsiglip")
    gen, enc = load_generator(gen_rec, load_settings()), load_encoder(enc_rec, load_settings())
    probe = Probe(name="urgent", label="urgent", version="1", encoder_id=enc.info.model_id,
                  weights=np.zeros(enc.dim), bias=-5.0, calib_a=1.0, calib_b=0.0,
                  threshold=0.5)
    opts = InterpretOptions.from_records(
        gen_rec, enc_rec, max_new_tokens=8, language="fr", back_translate=True,
        urgent_probe=str(save_probe(probe, tmp_path / "probes")))
    study = Study.from_ingested([ingest(cxr_dicom)], priors=[ingest(cxr_pngs[0])],
                                context=StudyContext(indication="dyspnoea"))
    events = []
    with CaseLibrary.open(settings) as lib:
        lib.add_cases(enc, enc_rec, [CaseInput(p, f"c{i}") for i, p in enumerate(cxr_pngs)])
        r = interpret(study, opts, generator=gen, encoder=enc, library=lib,
                      on_event=events.append)
    assert r.status == "complete" and r.language == "fr"
    assert r.report is not None and r.report.raw_text == r.report.raw_text.strip()
    assert [len(b.scores) for b in r.finding_scores] == [14, 14]
    assert r.cross_check is not None and r.cross_check.source_text == "back_translation"
    assert r.language_check is not None and r.language_check.language == "fr"
    assert r.urgency is not None and r.urgency.probe is not None
    assert r.urgency.probe.probability == pytest.approx(1 / (1 + np.exp(5.0)))
    assert not r.urgency.probe.fired
    assert r.similar_cases is not None and len(r.similar_cases) == 3
    assert [g.accepted for g in r.gate] == [True, True]
    assert r.context_used == ["indication", "image 1 DICOM description"]
    p = r.provenance
    assert p.generator.model_id == "medlens/test-medgemma" and p.generator.is_test
    assert p.generator.revision == "local" and p.generator.weights_hash
    assert p.encoder.model_id == "medlens/test-medsiglip" and p.encoder.weights_hash
    assert p.prompt.name.startswith("cxr-comparison") and p.prompt.version == "1.0"
    assert p.generation.output_tokens <= 8 and p.generation.prompt_tokens > 100
    assert p.generation.images_encoded + p.generation.images_cached == 2
    assert len(p.inputs) == 2 and p.test_model
    assert r.test_model_label == TEST_MODEL_LABEL and r.disclaimer == DISCLAIMER
    assert Interpretation.from_json(r.to_json()) == r
    assert any(e.kind == "token" for e in events) or r.report.raw_text == ""


@pytest.mark.parametrize(("fmt", "thinking"), [("medgemma-1.5", False), ("medgemma-v1", True)])
def test_prompt_formats_through_the_real_chat_template(tiny_test_models: dict, fmt: str,
                                                       thinking: bool,
                                                       cxr_pngs: list[Path]) -> None:
    """The Gemma chat template accepts our message layouts (1.5: images first, no system;
    27B-style thinking system prefix) for one and two images."""
    from medlens.config import load_settings
    from medlens.models.registry import load_registry
    from medlens.models.session import load_generator

    rec = load_registry(load_settings()).get("medlens/test-medgemma")
    gen = load_generator(rec, load_settings())
    opts = InterpretOptions.from_records(rec, prompt_format=fmt, thinking=thinking,
                                         max_new_tokens=3, scores=False)
    r = interpret(_study(cxr_pngs[:1], priors=cxr_pngs[1:2]), opts, generator=gen)
    assert r.status == "complete" and r.provenance.prompt.prompt_format == fmt
    assert r.provenance.generation.images_encoded + r.provenance.generation.images_cached == 2


def test_ct_volume_becomes_ordered_slices(dicom_dir: Path) -> None:
    import numpy as np

    ct = ingest(dicom_dir / "CT_small.dcm")
    vol = np.stack([np.full((32, 32, 3), v, np.uint8) for v in (10, 120, 240)])
    study = Study(images=(StudyImage(replace(ct, volume=vol)),), modality="ct")
    gen = MockGenerator(["Findings: no acute abnormality."])
    r = interpret(study, OPTS, generator=gen, encoder=FakeEncoder())
    assert r.status == "complete" and r.gate[0].reason == "not gated"
    parts = gen.calls[0][-1].images
    assert [p.key.split(":")[1] for p in parts] == ["s0", "s1", "s2"]
    assert [p.image.getpixel((32, 32))[0] for p in parts] == [10, 120, 240]
    assert r.provenance.prompt.name.startswith("ct") and r.finding_scores == []
    assert r.urgency is None and not r.cross_check.checked


def test_dermatology_uses_its_prompt_and_label_set(cxr_pngs: list[Path]) -> None:
    gen = MockGenerator(["Findings: pigmented macule.\nImpression: naevus."])
    study = Study.from_ingested([ingest(cxr_pngs[0])], modality="dermatology")
    r = interpret(study, OPTS, generator=gen, encoder=FakeEncoder())
    assert r.provenance.prompt.name == "dermatology"
    assert gen.calls[0][0].content[0].text == "You are an expert dermatologist."
    assert r.finding_scores and r.finding_scores[0].label_set == "dermatology"
    assert r.urgency is None and r.report.impression == "naevus."

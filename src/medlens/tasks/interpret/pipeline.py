"""The X-ray Interpreter: `interpret(study, options, *, generator, encoder=None)`.

Model loading stays OUT of this function: the CLI, the server's jobs and the tests pass
ready backends, so all of them share one code path. Stages (each timed, each announced
as an Event): gate → preprocess → scores → prompt → generate → parse → language check →
cross-check → urgency → similar cases. A refused image never reaches the generator; a
study whose current images are all refused gets status "refused" and no report.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from medlens.disclaimer import TEST_MODEL_LABEL
from medlens.errors import MedLensError
from medlens.models.registry import PreprocessSpec
from medlens.tasks.interpret import provenance as prov
from medlens.tasks.interpret.crosscheck import DEFAULT_HIGH, DEFAULT_LOW, cross_check, not_checked
from medlens.tasks.interpret.labeler import label_report
from medlens.tasks.interpret.language import (
    back_translate,
    check_back_translation,
    language_instruction,
    normalise_language,
)
from medlens.tasks.interpret.model_inputs import (
    choose_prompt,
    generator_parts,
    image_list_line,
    label_set_for,
    untrusted_fields,
)
from medlens.tasks.interpret.report_parser import parse_report
from medlens.tasks.interpret.result import (
    GateRecord,
    ImageFindingScores,
    Interpretation,
    ReportSections,
)
from medlens.tasks.interpret.urgency import assess_urgency, run_urgent_probe
from medlens.tasks.prompting import build_messages
from medlens.tasks.streaming import Event, EventCallback, emit

if TYPE_CHECKING:
    from medlens.models.protocols import Encoder, Generator
    from medlens.models.registry import ModelRecord
    from medlens.tasks.interpret.study import Study, StudyImage

# The report prompts ask the model to say so when an image is not a chest X-ray.
_WRONG_MODALITY = re.compile(
    r"\b(?:is|are|does) not (?:appear to be |show )?(?:a |an )?"
    r"chest (?:x-?rays?|radiographs?)\b",
    re.I,
)
_STAGES = (
    "gate",
    "preprocess",
    "scores",
    "prompt",
    "generate",
    "parse",
    "language",
    "crosscheck",
    "urgency",
    "similar",
)


@dataclass(frozen=True)
class InterpretOptions:
    """What to do; the model records' facts (format, preprocessing) come in here too."""

    prompt_format: str = "medgemma-v1"
    generator_preprocess: PreprocessSpec = field(default_factory=lambda: PreprocessSpec(896))
    encoder_preprocess: PreprocessSpec | None = None
    thinking: bool = False
    language: str = "en"
    back_translate: bool = False
    prompt: str | None = None  # a user-typed instruction replacing the template's
    prompt_name: str | None = None  # force a prompt file (default: chosen from the study)
    max_new_tokens: int = 300
    scores: bool = True
    label_set: str = "cxr"
    gate: bool = True
    urgent_probe: str | None = None  # path of the "urgent" probe (settings.probes["urgent"])
    similar_k: int = 5
    high_threshold: float = DEFAULT_HIGH
    low_threshold: float = DEFAULT_LOW

    @classmethod
    def from_records(
        cls,
        generator: ModelRecord,
        encoder: ModelRecord | None = None,
        settings: Any = None,
        **overrides: Any,
    ) -> InterpretOptions:
        """Options for these registry records (+ settings: probes, language, max tokens)."""
        kw: dict[str, Any] = {
            "prompt_format": generator.prompt_format,
            "thinking": generator.thinking,
            "generator_preprocess": generator.preprocess or PreprocessSpec(896),
            "encoder_preprocess": encoder.preprocess if encoder else None,
        }
        if settings is not None:
            kw["max_new_tokens"] = settings.max_new_tokens
            kw["language"] = settings.language
            if "urgent" in (settings.probes or {}):
                kw["urgent_probe"] = str(settings.probes["urgent"])
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kw)


class _Clock:
    def __init__(self, on_event: EventCallback | None) -> None:
        self.timings: dict[str, float] = {}
        self.on_event = on_event
        self._t0 = time.perf_counter()

    def stage(self, name: str) -> _Timer:
        emit(self.on_event, Event("stage", stage=name, progress=_STAGES.index(name) / len(_STAGES)))
        return _Timer(self, name)


class _Timer:
    def __init__(self, clock: _Clock, name: str) -> None:
        self.clock, self.name = clock, name

    def __enter__(self) -> _Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        t = self.clock.timings
        t[self.name] = round(t.get(self.name, 0.0) + time.perf_counter() - self.start, 6)


def gate_images(
    study: Study, encoder: Encoder | None, enabled: bool, warnings: list[str]
) -> tuple[list[GateRecord], list[StudyImage]]:
    """Per image: accepted or refused with a reason (chest X-ray gate for cxr studies).
    Also returns the images with the view the gate recognised (a PNG has no ViewPosition,
    but the gate may flag it as a lateral view)."""
    from dataclasses import replace

    gate = None
    if enabled and study.modality == "cxr":
        try:
            from medlens.imaging.gate import gate_chest_xray as gate
        except ImportError:
            warnings.append("Image gate unavailable: images were not checked for modality.")
    records, images = [], []
    for idx, img in enumerate(study.images):
        accepted, reason = True, "gate disabled" if not enabled else "not gated"
        flags: list[str] = []
        if gate is not None:
            decision = gate(img.ingested, encoder=encoder)
            accepted, reason = bool(decision.accepted), str(decision.reason)
            flags = [str(f) for f in getattr(decision, "flags", ())]
            if img.view == "unknown" and any("lateral" in f for f in flags):
                img = replace(img, view="lateral")
        images.append(img)
        records.append(
            GateRecord(
                image_index=idx,
                source_name=img.ingested.source_name,
                view=img.view,
                timepoint=img.timepoint,
                accepted=accepted,
                reason=reason,
                flags=flags,
            )
        )
    return records, images


def interpret(
    study: Study,
    options: InterpretOptions | None = None,
    *,
    generator: Generator,
    encoder: Encoder | None = None,
    library: Any = None,
    on_event: EventCallback | None = None,
) -> Interpretation:
    """Interpret a study with ready backends (see module docstring)."""
    from medlens.models.protocols import GenerationConfig, GenerationStats
    from medlens.models.thinking import ThinkingFilter

    options = options or InterpretOptions()
    language = normalise_language(options.language)
    clock, warnings = _Clock(on_event), []
    for img in study.images:
        warnings.extend(img.ingested.warnings)

    with clock.stage("gate"):
        gate, images = gate_images(study, encoder, options.gate, warnings)
    accepted = [img for img, g in zip(images, gate, strict=True) if g.accepted]
    accepted_idx = [g.image_index for g in gate if g.accepted]
    test_model = generator.info.is_test or bool(encoder and encoder.info.is_test)
    base = dict(
        study_id=study.study_id,
        language=language,
        gate=gate,
        warnings=warnings,
        test_model_label=TEST_MODEL_LABEL if test_model else None,
    )
    if not any(i.timepoint == "current" for i in accepted):
        reasons = "; ".join(
            f"image {g.image_index + 1}: {g.reason}" for g in gate if not g.accepted
        )
        warnings.append(f"No report: every current image was refused ({reasons}).")
        _emit_warnings(on_event, warnings)
        return Interpretation(
            status="refused",
            provenance=prov.build(study, generator, encoder, None, clock.timings, None, test_model),
            **base,
        )

    with clock.stage("preprocess"):
        parts = generator_parts(accepted, options.generator_preprocess)

    finding_scores: list[ImageFindingScores] = []
    embeddings = None
    with clock.stage("scores"):
        label_set = label_set_for(study.modality, options)
        if encoder is not None and options.scores and label_set:
            finding_scores, embeddings = _scores(
                encoder, accepted, accepted_idx, label_set, options
            )
        elif options.scores and encoder is None:
            warnings.append("No encoder: finding scores and the cross-check were skipped.")
    # The primary image (scores for cross-check, urgency probe, retrieval): the first
    # current non-lateral image, else the first scored one.
    pos = next(
        (
            n
            for n, img in enumerate(accepted)
            if img.timepoint == "current" and img.view != "lateral"
        ),
        0,
    )
    primary = finding_scores[pos] if finding_scores else None
    scores = {s.label: s.probability for s in primary.scores} if primary else {}

    with clock.stage("prompt"):
        template = choose_prompt(study, accepted, options)
        data = untrusted_fields(study, accepted)
        messages = build_messages(
            template,
            prompt_format=options.prompt_format,
            images=parts,
            extra_lines=[image_list_line(accepted, study.modality), language_instruction(language)],
            data=data,
            thinking=options.thinking,
            instruction=options.prompt,
        )
        context_used = [k for k, v in data.items() if v]

    stats = GenerationStats()
    with clock.stage("generate"):
        filt, pieces = ThinkingFilter(), []
        config = GenerationConfig(max_new_tokens=options.max_new_tokens)
        for piece in generator.stream(messages, config, stats):
            visible = filt.feed(piece)
            if visible:
                pieces.append(visible)
                emit(on_event, Event("token", stage="generate", text=visible))
        tail = filt.flush()
        if tail:
            pieces.append(tail)
            emit(on_event, Event("token", stage="generate", text=tail))
        text = "".join(pieces).strip()
        if not text and filt.thought:
            warnings.append("The model produced only a thought and no answer.")

    with clock.stage("parse"):
        report: ReportSections = parse_report(text)
        if study.modality == "cxr" and _WRONG_MODALITY.search(text):
            warnings.append(
                "The model says an image is not a chest X-ray: check the input "
                "before reading this report."
            )

    cxr = study.modality == "cxr"
    english_text, source = (text, "report") if language == "en" else ("", "none")
    language_check = None
    with clock.stage("language"):
        if cxr and language != "en" and options.back_translate and text:
            bt = back_translate(
                generator,
                text,
                prompt_format=options.prompt_format,
                max_new_tokens=max(options.max_new_tokens, 200),
            )
            english_text, source = bt, "back_translation"
            language_check = check_back_translation(
                language,
                bt,
                label_report(bt),
                scores,
                high=options.high_threshold,
                low=options.low_threshold,
            )

    mentions = label_report(english_text) if english_text and cxr else {}
    urgency = None
    with clock.stage("crosscheck"):
        if not cxr:
            check = not_checked("The report labeler and cross-check cover chest X-rays only.")
        elif not english_text:
            check = not_checked(
                f"The report is in {language}; run with the back-translation "
                "check to cross-check it."
            )
        elif not scores:
            check = not_checked("No finding scores (no encoder or scores disabled).", mentions)
        else:
            check = cross_check(
                english_text,
                scores,
                mentions=mentions,
                source_text=source,
                high=options.high_threshold,
                low=options.low_threshold,
            )

    with clock.stage("urgency"):
        probe = None
        if cxr and options.urgent_probe and embeddings is not None:
            try:
                probe = run_urgent_probe(options.urgent_probe, embeddings[pos])
            except MedLensError as err:  # a broken probe file must not lose the report
                warnings.append(f"Urgency probe not used: {err}")
        if cxr:
            urgency = assess_urgency(mentions, english_text, scores, probe)
        if cxr and not english_text:
            warnings.append("Urgency rules read English text only; only scores were used.")

    similar = None
    with clock.stage("similar"):
        if cxr and library is not None and embeddings is not None:
            similar = prov.similar_cases(library, embeddings[pos], options.similar_k, warnings)

    template_ref = (template, options.prompt)
    _emit_warnings(on_event, warnings)
    return Interpretation(
        status="complete",
        report=report,
        finding_scores=finding_scores,
        cross_check=check,
        urgency=urgency,
        similar_cases=similar,
        language_check=language_check,
        context_used=context_used,
        provenance=prov.build(
            study,
            generator,
            encoder,
            template_ref,
            clock.timings,
            stats,
            test_model,
            options.prompt_format,
            accepted_idx,
        ),
        **base,
    )


def _emit_warnings(on_event: EventCallback | None, warnings: list[str]) -> None:
    for w in warnings:
        emit(on_event, Event("warning", text=w))


def _scores(
    encoder: Encoder,
    images: Sequence[StudyImage],
    indices: Sequence[int],
    label_set_name: str,
    options: InterpretOptions,
) -> tuple[list[ImageFindingScores], Any]:
    import numpy as np

    from medlens.tasks.classify.zero_shot import load_label_set, zero_shot_embeddings
    from medlens.tasks.encoding import image_parts
    from medlens.tasks.interpret.result import FindingScore

    label_set = load_label_set(label_set_name)
    parts = image_parts([i.ingested for i in images], options.encoder_preprocess)
    emb = np.asarray(encoder.embed_images(parts), dtype=np.float32)
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
    return blocks, emb


def interpret_events(study: Study, options: InterpretOptions | None = None, **kwargs: Any):
    """`interpret` as an iterator of Events (last: a `result` event with the
    Interpretation). The CLI and the server both consume this."""
    from medlens.tasks.streaming import stream_events

    return stream_events(interpret, study, options, **kwargs)


__all__ = [
    "InterpretOptions",
    "choose_prompt",
    "generator_parts",
    "image_list_line",
    "interpret",
    "interpret_events",
    "untrusted_fields",
]

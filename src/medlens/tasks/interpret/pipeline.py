"""The X-ray Interpreter: `interpret(study, options, *, generator, encoder=None)`.

Model loading stays OUT of this function: the CLI, the server's jobs and the tests pass
ready backends, so all of them share one code path. Stages (each timed, each announced
as an Event), each a function in the module named for it: gate (`gate`) → preprocess
(`model_inputs`) → scores (`scoring`) → prompt → generate → parse (`generation`) →
language (`language`) → cross-check (`crosscheck`) → urgency (`urgency`) → similar cases
(`provenance`). A refused image never reaches the generator; a study whose current images
are all refused gets status "refused" and no report. Each model's vision tower runs once
per image: the gate and the scores share the encoder's input (`EncoderParts`), and the
urgency probe and similar cases reuse the scores' embeddings.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from medlens.disclaimer import TEST_MODEL_LABEL
from medlens.tasks.encoding import EncoderParts
from medlens.tasks.interpret import provenance as prov
from medlens.tasks.interpret.crosscheck import check_report
from medlens.tasks.interpret.extra_stages import apply_comparison, study_comparison, study_regions
from medlens.tasks.interpret.gate import gate_images
from medlens.tasks.interpret.generation import build_prompt, generate_report, parse_text
from medlens.tasks.interpret.labeler import label_report
from medlens.tasks.interpret.language import english_for_checks, normalise_language
from medlens.tasks.interpret.model_inputs import (
    choose_prompt,
    generator_parts,
    image_list_line,
    label_set_for,
    untrusted_fields,
)
from medlens.tasks.interpret.options import InterpretOptions, StageClock
from medlens.tasks.interpret.result import GateRecord, Interpretation
from medlens.tasks.interpret.scoring import StudyScores, primary_position, score_images
from medlens.tasks.interpret.urgency import study_urgency
from medlens.tasks.streaming import Event, EventCallback, emit

if TYPE_CHECKING:
    from medlens.models.protocols import Encoder, GenerationStats, Generator, ImagePart
    from medlens.tasks.interpret.result import (
        Comparison,
        CrossCheck,
        LanguageCheck,
        ReportSections,
        Urgency,
    )
    from medlens.tasks.interpret.study import Study, StudyImage
    from medlens.tasks.prompting import PromptTemplate


@dataclass
class _Run:
    """What every stage of one interpretation may read, and the warnings they add."""

    study: Study
    options: InterpretOptions
    generator: Generator
    encoder: Encoder | None
    clock: StageClock
    language: str
    warnings: list[str] = field(default_factory=list)

    @property
    def chest(self) -> bool:
        return self.study.modality == "cxr"

    @property
    def test_model(self) -> bool:
        return self.generator.info.is_test or bool(self.encoder and self.encoder.info.is_test)

    def base(self, gate: list[GateRecord]) -> dict[str, Any]:
        """The Interpretation fields a refused and a complete result share."""
        return dict(
            study_id=self.study.study_id,
            language=self.language,
            gate=gate,
            warnings=self.warnings,
            test_model_label=TEST_MODEL_LABEL if self.test_model else None,
        )


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
    options = options or InterpretOptions()
    run = _Run(
        study,
        options,
        generator,
        encoder,
        StageClock(on_event),
        normalise_language(options.language),
    )
    for img in study.images:
        run.warnings.extend(img.ingested.warnings)
    encoder_parts = EncoderParts(options.encoder_preprocess)
    with run.clock.stage("gate"):
        gate, images = gate_images(study, encoder, options.gate, run.warnings, encoder_parts)
    accepted = [img for img, g in zip(images, gate, strict=True) if g.accepted]
    if not any(i.timepoint == "current" for i in accepted):
        return _refused(run, gate, on_event)
    accepted_idx = [g.image_index for g in gate if g.accepted]
    with run.clock.stage("preprocess"):
        parts = generator_parts(accepted, options.generator_preprocess)
    with run.clock.stage("scores"):
        scores = _scores(run, accepted, accepted_idx, encoder_parts)
    comparison = None
    if options.compare:  # stages announced only when they run
        with run.clock.stage("compare"):
            comparison = study_comparison(study, accepted, parts, options, generator, run.warnings)
    rep = _report(run, accepted, parts, scores, on_event, comparison)
    regions = []
    if options.ground:
        with run.clock.stage("ground"):
            regions = study_regions(
                study, accepted, parts, accepted_idx, rep.sections, rep.mentions, options,
                generator, run.warnings,
            )  # fmt: skip
    similar = None
    with run.clock.stage("similar"):
        if run.chest and library is not None and scores.embeddings is not None:
            similar = prov.similar_cases(
                library, scores.primary_embedding, options.similar_k, run.warnings
            )
    _emit_warnings(on_event, run.warnings)
    return Interpretation(
        status="complete",
        report=rep.sections,
        finding_scores=scores.blocks,
        cross_check=rep.check,
        urgency=rep.urgency,
        similar_cases=similar,
        language_check=rep.language_check,
        context_used=rep.context_used,
        regions=regions,
        comparison=comparison,
        provenance=prov.build(
            study,
            generator,
            encoder,
            (rep.template, options.prompt),
            run.clock.timings,
            rep.stats,
            run.test_model,
            options.prompt_format,
            accepted_idx,
        ),
        **run.base(gate),
    )


def _refused(run: _Run, gate: list[GateRecord], on_event: EventCallback | None) -> Interpretation:
    reasons = "; ".join(f"image {g.image_index + 1}: {g.reason}" for g in gate if not g.accepted)
    run.warnings.append(f"No report: every current image was refused ({reasons}).")
    _emit_warnings(on_event, run.warnings)
    provenance = prov.build(
        run.study, run.generator, run.encoder, None, run.clock.timings, None, run.test_model
    )
    return Interpretation(status="refused", provenance=provenance, **run.base(gate))


def _scores(
    run: _Run, accepted: list[StudyImage], indices: list[int], parts: EncoderParts
) -> StudyScores:
    """The scores stage: zero-shot scores of the accepted images (none without encoder)."""
    label_set = label_set_for(run.study.modality, run.options)
    if run.encoder is not None and run.options.scores and label_set:
        return score_images(run.encoder, accepted, indices, label_set, parts)
    if run.options.scores and run.encoder is None:
        run.warnings.append("No encoder: finding scores and the cross-check were skipped.")
    return StudyScores(primary=primary_position(accepted))


@dataclass
class _Report:
    """What the report stages (prompt → urgency) made."""

    template: PromptTemplate
    context_used: list[str]
    stats: GenerationStats
    sections: ReportSections
    check: CrossCheck
    urgency: Urgency | None
    language_check: LanguageCheck | None
    mentions: dict[str, Any] = field(default_factory=dict)


def _report(
    run: _Run,
    accepted: list[StudyImage],
    parts: list[ImagePart],
    scores: StudyScores,
    on_event: EventCallback | None,
    comparison: Comparison | None = None,
) -> _Report:
    """prompt → generate → parse → language → cross-check → urgency."""
    opts, primary = run.options, scores.primary_scores
    with run.clock.stage("prompt"):
        template, messages, context_used = build_prompt(
            run.study, accepted, parts, opts, run.language
        )
    with run.clock.stage("generate"):
        text, stats = generate_report(
            run.generator, messages, opts.max_new_tokens, on_event, run.warnings
        )
    with run.clock.stage("parse"):
        sections = parse_text(text, run.study.modality, run.warnings)
    with run.clock.stage("language"):
        english, source, language_check = english_for_checks(
            run.generator, text, run.language, primary, opts, chest=run.chest
        )
    mentions = label_report(english) if english and run.chest else {}
    with run.clock.stage("crosscheck"):
        check = check_report(
            english,
            run.language,
            primary,
            mentions,
            source=source,
            chest=run.chest,
            high=opts.high_threshold,
            low=opts.low_threshold,
        )
    urgency = None
    with run.clock.stage("urgency"):
        if run.chest:
            embedding = scores.primary_embedding
            urgency = study_urgency(
                opts.urgent_probe, embedding, mentions, english, primary, run.warnings,
                report=(run.language, text),
            )  # fmt: skip
            urgency = apply_comparison(urgency, comparison, mentions)
    return _Report(
        template, context_used, stats, sections, check, urgency, language_check, mentions
    )


def _emit_warnings(on_event: EventCallback | None, warnings: list[str]) -> None:
    for w in warnings:
        emit(on_event, Event("warning", text=w))


def interpret_events(
    study: Study, options: InterpretOptions | None = None, **kwargs: Any
) -> Iterator[Event]:
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

"""`medlens interpret IMAGE [IMAGE...]`: the X-ray Interpreter from the command line.

Ingest (PNG, JPEG, DICOM) → gate → preprocess → zero-shot scores → streamed report →
cross-check → urgency → provenance + disclaimer. `--json` prints the documented
Interpretation schema (docs/interpretation-schema.md) and nothing else on stdout;
`--fhir OUT.json` writes the FHIR R4 DiagnosticReport the API serves (same builder).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from medlens.cli._interpret_extras import (
    CompareOpt,
    GroundOpt,
    PriorDateOpt,
    PriorReportOpt,
    with_prior,
)
from medlens.cli._interpret_options import (
    AskOpt,
    BackTranslateOpt,
    ContextOpt,
    EhrOpt,
    FhirOpt,
    ImagesArg,
    JsonOpt,
    LanguageOpt,
    LateralOpt,
    MaxTokensOpt,
    ModalityOpt,
    NoScoresOpt,
    OverlayOpt,
    PriorOpt,
    PromptOpt,
    SimilarOpt,
    SrOpt,
)
from medlens.cli.common import (
    EncoderOpt,
    GeneratorOpt,
    LegacyModelOpt,
    VerboseOpt,
    apply_verbose,
    fail,
    model_flag,
    print_json,
    settings_from,
)
from medlens.cli.interpret_summary import print_summary
from medlens.disclaimer import TEST_MODEL_LABEL
from medlens.errors import BackendUnavailable, MedLensError, ModelNotAvailable

if TYPE_CHECKING:
    from rich.console import Console

    from medlens.config import Settings
    from medlens.imaging.types import IngestedImage
    from medlens.models.registry import ModelRecord
    from medlens.tasks.interpret.result import Interpretation
    from medlens.tasks.interpret.study import Study, StudyContext


TEST_ENCODER = "medlens/test-medsiglip"
MODALITIES = ("cxr", "dermatology", "pathology", "fundus", "ct")


def register(app: typer.Typer) -> None:
    app.command("interpret")(interpret_cmd)


def interpret_cmd(
    images: ImagesArg,
    prior: PriorOpt = None,
    lateral: LateralOpt = None,
    prompt: PromptOpt = None,
    generator: GeneratorOpt = None,
    encoder: EncoderOpt = None,
    language: LanguageOpt = None,
    back_translate: BackTranslateOpt = True,
    context: ContextOpt = None,
    ehr: EhrOpt = None,
    ask: AskOpt = None,
    json_out: JsonOpt = False,
    fhir_out: FhirOpt = None,
    no_scores: NoScoresOpt = False,
    max_new_tokens: MaxTokensOpt = None,
    modality: ModalityOpt = "cxr",
    similar: SimilarOpt = 5,
    sr_out: SrOpt = None,
    overlay: OverlayOpt = "none",
    ground: GroundOpt = False,
    prior_report: PriorReportOpt = None,
    prior_date: PriorDateOpt = None,
    compare: CompareOpt = None,
    verbose: VerboseOpt = False,
    model: LegacyModelOpt = None,
) -> None:
    """Draft a report for chest X-ray image(s), with scores, cross-check and urgency."""
    apply_verbose(verbose)
    try:
        _run(
            images,
            prior or [],
            lateral or [],
            prompt,
            model_flag(generator, model, "--generator"),
            encoder,
            language,
            back_translate,
            context,
            ehr,
            ask or [],
            json_out,
            no_scores,
            max_new_tokens,
            similar,
            modality,
            fhir_out,
            (sr_out, overlay),
            extras=(ground, prior_report, prior_date, compare),
        )
    except MedLensError as err:
        fail(err)


def _run(
    images: list[Path],
    priors: list[Path],
    laterals: list[Path],
    prompt: str | None,
    model: str | None,
    encoder_id: str | None,
    language: str | None,
    back_translate: bool,
    context: str | None,
    ehr: Path | None,
    ask: list[str],
    json_out: bool,
    no_scores: bool,
    max_new_tokens: int | None,
    similar: int = 0,
    modality: str = "cxr",
    fhir_out: Path | None = None,
    sr: tuple[Path | None, str] = (None, "none"),
    extras: tuple[bool, Path | None, str | None, bool | None] = (False, None, None, None),
) -> None:
    from medlens.tasks.interpret.language import normalise_language
    from medlens.tasks.interpret.pipeline import interpret_events

    _check_choices(modality, sr[1])
    settings = settings_from(max_new_tokens=max_new_tokens)
    lang = normalise_language(language or settings.language)
    encoder_id = _check_models(settings, model, encoder_id, no_scores)
    err, out, status = _consoles(json_out)
    t0 = time.perf_counter()
    read = [_read(settings, paths) for paths in (images, priors, laterals)]
    status(f"read {sum(len(r) for r in read)} image(s)")
    generator, gen_rec, enc, enc_rec = _load_models(settings, model, encoder_id, no_scores, err)
    load_s = time.perf_counter() - t0
    status(f"models ready in {load_s:.1f}s: {gen_rec.id}" + (f", {enc_rec.id}" if enc_rec else ""))
    study = _study(read, _context(context, ehr, generator, gen_rec), modality)
    study = with_prior(study, extras[1], extras[2])
    options = _options(
        (gen_rec, enc_rec, settings, study),
        language=lang,
        back_translate=back_translate,
        prompt=prompt,
        scores=not no_scores,
        similar_k=max(similar, 1),
        ground=extras[0],
        compare=extras[3],
    )
    library = _library(settings, enc, similar)
    if (gen_rec.is_test or bool(enc_rec and enc_rec.is_test)) and not json_out:
        err.print(f"[bold yellow]{TEST_MODEL_LABEL}[/bold yellow]")
    events = interpret_events(study, options, generator=generator, encoder=enc, library=library)
    result = _follow(events, out, status, json_out)
    result.provenance.timings["load_models"] = round(load_s, 6)
    turns = _ask(study, result, options, generator, ask)
    _deliver(result, turns, images, settings, (fhir_out, *sr), json_out, out, status)


def _check_choices(modality: str, overlay: str) -> None:
    from medlens.errors import ConfigError

    if modality not in MODALITIES:
        raise ConfigError(f"Unknown modality {modality!r}; use one of {', '.join(MODALITIES)}.")
    if overlay not in ("none", "gsps", "sc"):
        raise ConfigError(f"Unknown overlay {overlay!r}; use none, gsps or sc.")


def _consoles(json_out: bool) -> tuple[Console, Console, Callable[[str], None]]:
    """(stderr console, stdout console, status printer: silent with --json)."""
    from rich.console import Console

    err = Console(stderr=True, highlight=False)
    out = Console(highlight=False, soft_wrap=True)

    def status(msg: str) -> None:
        if not json_out:
            err.print(f"[dim]· {msg}[/dim]")

    return err, out, status


def _options(records: tuple, compare: bool | None, **kwargs: Any) -> Any:  # type: ignore[type-arg]
    """Pipeline options; --compare defaults to whether the study has a prior."""
    from medlens.tasks.interpret.pipeline import InterpretOptions

    gen_rec, enc_rec, settings, study = records
    return InterpretOptions.from_records(
        gen_rec,
        enc_rec,
        settings,
        **kwargs,
        compare=study.prior is not None if compare is None else compare,
    )


def _deliver(result, turns, images, settings, outs, json_out, out, status) -> None:  # type: ignore[no-untyped-def]
    """Write FHIR / DICOM SR when asked, print the result; exit 3 unless it is complete."""
    fhir_out, sr_dir, overlay = outs
    if fhir_out is not None:
        _write_fhir(fhir_out, result)
    if sr_dir is not None:
        from medlens.integrations.results import write_local

        written = write_local(result, images, sr_dir, sr_kind=settings.sr_kind, overlay=overlay)
        status(f"wrote {len(written)} DICOM object(s) to {sr_dir}")
    if json_out:
        print_json(result.model_dump(mode="json"))
    else:
        print_summary(out, result, turns)
    if result.status != "complete":
        raise typer.Exit(3)  # every image refused: scripts must not mistake it for a report


def _check_models(
    settings: Settings, model: str | None, encoder_id: str | None, no_scores: bool
) -> str | None:
    """The encoder id to use; fails fast on a bad model id, before reading or loading."""
    from medlens.models.session import default_session

    session = default_session()
    gen_record = session.record(settings, model, "generator")
    if encoder_id is None and gen_record.is_test:
        encoder_id = TEST_ENCODER  # a test generator pairs with the test encoder
    if not no_scores:
        session.record(settings, encoder_id, "encoder")
    return encoder_id


def _read(settings: Settings, paths: list[Path]) -> list[IngestedImage]:
    from medlens.imaging.ingest import ingest

    return [ingest(p, max_pixels=settings.max_image_pixels) for p in paths]


def _load_models(
    settings: Settings, model: str | None, encoder_id: str | None, no_scores: bool, err: Console
) -> tuple[Any, ModelRecord, Any, ModelRecord | None]:
    """(generator, its record, encoder or None, its record or None)."""
    from medlens.models.session import default_session

    session = default_session()
    generator, gen_rec = session.generator_for(settings, model)
    enc, enc_rec = (None, None)
    if not no_scores:
        try:
            enc, enc_rec = session.encoder_for(settings, encoder_id)
        except (ModelNotAvailable, BackendUnavailable) as exc:
            if encoder_id is not None:
                raise  # asked for explicitly: an error, not a silent downgrade
            # The default encoder is optional: report without scores, and say so.
            err.print(f"[yellow]warning:[/yellow] no finding scores: {exc}", markup=True)
    return generator, gen_rec, enc, enc_rec


def _study(read: list[list[IngestedImage]], context: StudyContext, modality: str) -> Study:
    """The study from (current, prior, lateral) images."""
    from medlens.tasks.interpret.study import Study

    current, priors, laterals = read
    return Study.from_ingested(
        current,
        priors=priors,
        laterals=laterals,
        context=context,
        modality=modality,
        study_id=_study_id(current + laterals + priors),
    )


def _follow(events, out: Console, status, quiet: bool) -> Interpretation:
    """Show stages and stream the report's tokens as they come; return the result."""
    result = None
    streaming = False
    for ev in events:
        if ev.kind == "stage" and not quiet:
            if streaming:
                out.print()
                streaming = False
            status(f"{ev.stage}… ({ev.progress or 0:.0%})")
        elif ev.kind == "token" and not quiet:
            streaming = True
            out.print(ev.text, end="", markup=False)
            out.file.flush()
        elif ev.kind == "result":
            result = ev.result
    assert result is not None
    return result


def _ask(study, result: Interpretation, options, generator, questions: list[str]) -> list:
    """Follow-up questions on the report; recorded in `result.followups` too."""
    if not questions or result.report is None:
        return []
    from medlens.tasks.interpret.conversation import Conversation
    from medlens.tasks.interpret.result import FollowUp

    conv = Conversation.start(study, result, options)
    turns = [conv.ask(generator, q) for q in questions]
    result.followups = [FollowUp(**t.__dict__) for t in turns]
    return turns


def _study_id(images: list) -> str:
    """The same images give the same id, so a re-run writes the same FHIR resource id."""
    digest = hashlib.sha256("".join(img.sha256 for img in images).encode()).hexdigest()
    return digest[:32]


def _write_fhir(path: Path, result: Interpretation) -> None:
    """The DiagnosticReport the API serves, from the same builder."""
    from medlens.tasks.interpret.fhir import to_diagnostic_report

    report = to_diagnostic_report(result)
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _library(settings, encoder, k: int):
    """The case library for similar cases, only when one exists with cases in it."""
    if k <= 0 or encoder is None:
        return None
    try:
        from medlens.tasks.retrieval.library import CaseLibrary
        from medlens.tasks.retrieval.tables import sqlite_path_for
    except ImportError:
        return None
    if not sqlite_path_for(settings).exists():
        return None  # never create a database just to find it empty
    lib = CaseLibrary.open(settings)
    lib.use_encoder(encoder)
    return lib if lib.size() > 0 else None


def _context(text: str | None, ehr: Path | None, generator, record) -> StudyContext:
    from medlens.tasks.ehr.patient_context import estimate_budget, patient_context
    from medlens.tasks.interpret.study import StudyContext

    if ehr is None:
        return StudyContext(indication=text)
    ctx = patient_context(
        ehr,
        budget_tokens=estimate_budget(record.context_length),
        count_tokens=generator.count_tokens,
    )
    return StudyContext(indication=text, age=ctx.age_band, sex=ctx.sex, ehr_summary=ctx.text)

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
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from medlens.cli.common import fail, print_json, settings_from
from medlens.disclaimer import DISCLAIMER, TEST_MODEL_LABEL
from medlens.errors import BackendUnavailable, MedLensError, ModelNotAvailable

if TYPE_CHECKING:
    from rich.console import Console

    from medlens.tasks.interpret.result import Interpretation


TEST_ENCODER = "medlens/test-medsiglip"
MODALITIES = ("cxr", "dermatology", "pathology", "fundus", "ct")


def register(app: typer.Typer) -> None:
    app.command("interpret")(interpret_cmd)


def interpret_cmd(
    images: Annotated[list[Path], typer.Argument(help="Current image(s): PNG, JPEG or DICOM.")],
    prior: Annotated[
        list[Path] | None,
        typer.Option("--prior", help="A prior image of the same patient (repeatable)."),
    ] = None,
    lateral: Annotated[
        list[Path] | None,
        typer.Option("--lateral", help="A lateral view of the current study (repeatable)."),
    ] = None,
    prompt: Annotated[
        str | None, typer.Option(help="Your own instruction instead of the built-in report prompt.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Generator: registry id or PATH (default: settings.generator)."),
    ] = None,
    encoder: Annotated[
        str | None,
        typer.Option(
            help="Encoder for finding scores: registry id or PATH (default: settings.encoder)."
        ),
    ] = None,
    language: Annotated[
        str | None,
        typer.Option(help="Report language (ISO 639-1: en, es, fr, de, pt, zh, hi, ...)."),
    ] = None,
    back_translate: Annotated[
        bool,
        typer.Option(
            "--back-translate/--no-back-translate",
            help="For non-English reports: translate back to English and cross-check it.",
        ),
    ] = True,
    context: Annotated[
        str | None, typer.Option(help="Clinical indication / context (treated as untrusted data).")
    ] = None,
    ehr: Annotated[
        Path | None, typer.Option(help="FHIR R4 bundle (JSON): adds a concise patient context.")
    ] = None,
    ask: Annotated[
        list[str] | None,
        typer.Option("--ask", help="A follow-up question after the report (repeatable)."),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the Interpretation JSON.")
    ] = False,
    fhir_out: Annotated[
        Path | None,
        typer.Option("--fhir", help="Also write the FHIR R4 DiagnosticReport (JSON) to this file."),
    ] = None,
    no_scores: Annotated[
        bool,
        typer.Option("--no-scores", help="Skip the encoder (no finding scores or cross-check)."),
    ] = False,
    max_new_tokens: Annotated[int | None, typer.Option(help="Report length cap (tokens).")] = None,
    modality: Annotated[
        str,
        typer.Option(
            help="cxr (default: gate, scores, cross-check, urgency), dermatology, pathology, "
            "fundus or ct (report prompt + scores where a label set exists)."
        ),
    ] = "cxr",
    similar: Annotated[
        int,
        typer.Option(
            help="Similar cases to show from the case library, when one exists (0: none)."
        ),
    ] = 5,
) -> None:
    """Draft a report for chest X-ray image(s), with scores, cross-check and urgency."""
    try:
        _run(
            images,
            prior or [],
            lateral or [],
            prompt,
            model,
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
) -> None:
    from rich.console import Console

    from medlens.errors import ConfigError
    from medlens.imaging.ingest import ingest
    from medlens.models.session import default_session
    from medlens.tasks.interpret.language import normalise_language
    from medlens.tasks.interpret.pipeline import InterpretOptions, interpret_events
    from medlens.tasks.interpret.study import Study

    if modality not in MODALITIES:
        raise ConfigError(f"Unknown modality {modality!r}; use one of {', '.join(MODALITIES)}.")
    settings = settings_from(max_new_tokens=max_new_tokens)
    lang = normalise_language(language or settings.language)
    session = default_session()
    # Fail fast on a bad model id, before reading images or loading anything.
    gen_record = session.record(settings, model, "generator")
    if encoder_id is None and gen_record.is_test:
        encoder_id = TEST_ENCODER  # a test generator pairs with the test encoder
    if not no_scores:
        session.record(settings, encoder_id, "encoder")
    err = Console(stderr=True, highlight=False)
    out = Console(highlight=False, soft_wrap=True)
    quiet = json_out

    def status(msg: str) -> None:
        if not quiet:
            err.print(f"[dim]· {msg}[/dim]")

    t0 = time.perf_counter()
    cap = settings.max_image_pixels
    current = [ingest(p, max_pixels=cap) for p in images]
    prior_imgs = [ingest(p, max_pixels=cap) for p in priors]
    lateral_imgs = [ingest(p, max_pixels=cap) for p in laterals]
    status(f"read {len(current) + len(prior_imgs) + len(lateral_imgs)} image(s)")

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
    load_s = time.perf_counter() - t0
    status(f"models ready in {load_s:.1f}s: {gen_rec.id}" + (f", {enc_rec.id}" if enc_rec else ""))

    study_ctx = _context(context, ehr, generator, gen_rec)
    study = Study.from_ingested(
        current,
        priors=prior_imgs,
        laterals=lateral_imgs,
        context=study_ctx,
        modality=modality,
        study_id=_study_id(current + lateral_imgs + prior_imgs),
    )
    options = InterpretOptions.from_records(
        gen_rec,
        enc_rec,
        settings,
        language=lang,
        back_translate=back_translate,
        prompt=prompt,
        scores=not no_scores,
        similar_k=max(similar, 1),
    )
    library = _library(settings, enc, similar)
    is_test = gen_rec.is_test or bool(enc_rec and enc_rec.is_test)
    if is_test and not quiet:
        err.print(f"[bold yellow]{TEST_MODEL_LABEL}[/bold yellow]")

    events = interpret_events(study, options, generator=generator, encoder=enc, library=library)
    result = _follow(events, out, status, quiet)
    result.provenance.timings["load_models"] = round(load_s, 6)
    turns = _ask(study, result, options, generator, ask)
    if fhir_out is not None:
        _write_fhir(fhir_out, result)
    if json_out:
        print_json(result.model_dump(mode="json"))
    else:
        _print_summary(out, result, turns)
    if result.status != "complete":
        raise typer.Exit(3)  # every image refused: scripts must not mistake it for a report


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


def _context(text: str | None, ehr: Path | None, generator, record):
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


def _print_summary(out: Console, r: Interpretation, turns: list) -> None:
    from rich.table import Table

    out.print()
    if r.status == "refused":
        out.print("[bold red]No report: the image gate refused every current image.[/bold red]")
    for g in r.gate:
        mark = "[green]accepted[/green]" if g.accepted else "[red]refused[/red]"
        out.print(
            f"image {g.image_index + 1} ({g.source_name}, {g.timepoint} {g.view}): "
            f"{mark} - {g.reason}"
        )
    scores = r.scores_for(next((b.image_index for b in r.finding_scores), None))
    if scores:
        table = Table(title="Finding scores (zero-shot encoder)", show_lines=False)
        table.add_column("finding")
        table.add_column("probability", justify="right")
        for label, p in sorted(scores.items(), key=lambda kv: -kv[1]):
            table.add_row(label, f"{p:.2f}")
        out.print(table)
    if r.cross_check is not None:
        if not r.cross_check.checked:
            out.print(f"Cross-check: not run ({r.cross_check.note})")
        elif r.cross_check.disagreements:
            out.print("[bold]Cross-check: report vs scores disagree on[/bold]")
            for d in r.cross_check.disagreements:
                out.print(f"  - {d.message}")
        else:
            out.print("Cross-check: no disagreements.")
    if r.similar_cases:
        out.print(
            "Similar cases: "
            + "; ".join(
                f"{c.case_id} ({c.score:.2f}{': ' + ', '.join(c.labels) if c.labels else ''})"
                for c in r.similar_cases
            )
        )
    if r.language_check is not None:
        out.print(
            f"Back-translation check ({r.language_check.language}): "
            + ("; ".join(r.language_check.mismatches) or "no mismatches")
        )
    if r.urgency is not None:
        out.print(f"[bold]Urgency: {r.urgency.level.upper()}[/bold]")
        for reason in r.urgency.reasons:
            out.print(f"  [{reason.rule_id}] {reason.reason}")
    for t in turns:
        out.print(f"\n[bold]Q:[/bold] {t.question}")
        out.print(t.answer, markup=False)
        out.print(f"[dim](images encoded this turn: {t.images_encoded})[/dim]")
    for w in r.warnings:
        out.print(f"[yellow]warning:[/yellow] {w}", markup=True)
    p = r.provenance
    if p.generator:
        g = p.generator
        out.print(
            f"Model: {g.model_id} (revision {g.revision}, weights "
            f"{g.weights_hash[:12]}, {g.backend}/{g.device}/{g.dtype})"
        )
    if p.encoder:
        e = p.encoder
        out.print(f"Encoder: {e.model_id} (revision {e.revision}, weights {e.weights_hash[:12]})")
    if p.prompt:
        out.print(f"Prompt: {p.prompt.name} v{p.prompt.version} ({p.prompt.prompt_format})")
    timings = ", ".join(f"{k} {v:.2f}s" for k, v in p.timings.items() if "." not in k)
    out.print(f"Timings: {timings}")
    out.print(f"MedLens {p.medlens_version}; inputs: " + ", ".join(i.sha256[:12] for i in p.inputs))
    if r.test_model_label:
        out.print(f"[bold yellow]{r.test_model_label}[/bold yellow]")
    out.print(f"[bold]{DISCLAIMER}[/bold] {r.verification_notice}")

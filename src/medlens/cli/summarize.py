"""`medlens summarize BUNDLE|NOTES`: summarise a FHIR bundle or clinical notes with the
text model (long records are chunked and summarised hierarchically)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medlens.cli.common import LegacyModelOpt, fail, model_flag, print_json, settings_from
from medlens.disclaimer import DISCLAIMER, TEST_MODEL_LABEL
from medlens.errors import MedLensError


def register(app: typer.Typer) -> None:
    app.command("summarize")(summarize_cmd)


def summarize_cmd(
    record: Annotated[Path, typer.Argument(help="FHIR R4 bundle (.json) or a notes text file.")],
    generator: Annotated[
        str | None,
        typer.Option(
            "--generator",
            help="Text model: registry id or PATH (default: settings.text_generator).",
        ),
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Length cap of each summary.")] = 400,
    chunk_tokens: Annotated[
        int | None, typer.Option(help="Chunk size (default: what the model's context allows).")
    ] = None,
    context_only: Annotated[
        bool,
        typer.Option(
            "--context-only", help="FHIR: print the deterministic patient context, no model."
        ),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    model: LegacyModelOpt = None,
) -> None:
    """Summarise a patient record for the radiologist (identifiers left out)."""
    try:
        generator = model_flag(generator, model, "--generator")
        _run(record, generator, max_new_tokens, chunk_tokens, context_only, json_out)
    except MedLensError as err:
        fail(err)


def _run(
    record: Path,
    model: str | None,
    max_new_tokens: int,
    chunk_tokens: int | None,
    context_only: bool,
    json_out: bool,
) -> None:
    from medlens.models.session import default_session
    from medlens.tasks.ehr.summarize import read_record, summarize_text

    settings = settings_from()
    kind, text = read_record(record)
    if context_only:
        if json_out:
            print_json({"kind": kind, "context": text, "disclaimer": DISCLAIMER})
        else:
            typer.echo(text)
            typer.echo(DISCLAIMER)
        return
    generator, rec = default_session().generator_for(settings, model, text=True)
    result = summarize_text(
        generator,
        text,
        context_length=rec.context_length,
        max_new_tokens=max_new_tokens,
        prompt_format=rec.prompt_format,
        chunk_tokens=chunk_tokens,
    )
    info = generator.info
    if json_out:
        print_json(
            {
                "kind": kind,
                "summary": result.summary,
                "calls": result.calls,
                "levels": result.levels,
                "chunks_per_level": result.chunks_per_level,
                "input_tokens": result.input_tokens,
                "prompts": result.prompts,
                "model": {
                    "id": info.model_id,
                    "revision": info.revision,
                    "weights_hash": info.weights_hash,
                    "is_test": info.is_test,
                },
                "test_model_label": TEST_MODEL_LABEL if info.is_test else None,
                "disclaimer": DISCLAIMER,
            }
        )
        return
    if info.is_test:
        typer.echo(TEST_MODEL_LABEL)
    typer.echo(result.summary)
    typer.echo(
        f"\n({result.calls} model call(s), {result.levels} level(s); "
        f"model {info.model_id} rev {info.revision})"
    )
    typer.echo(DISCLAIMER)

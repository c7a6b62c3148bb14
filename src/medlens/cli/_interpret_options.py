"""Options of `medlens interpret`, declared once so that the command reads as its logic."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ImagesArg = Annotated[list[Path], typer.Argument(help="Current image(s): PNG, JPEG or DICOM.")]
PriorOpt = Annotated[
    list[Path] | None,
    typer.Option("--prior", help="A prior image of the same patient (repeatable)."),
]
LateralOpt = Annotated[
    list[Path] | None,
    typer.Option("--lateral", help="A lateral view of the current study (repeatable)."),
]
PromptOpt = Annotated[
    str | None, typer.Option(help="Your own instruction instead of the built-in report prompt.")
]
LanguageOpt = Annotated[
    str | None,
    typer.Option(help="Report language (ISO 639-1: en, es, fr, de, pt, zh, hi, ...)."),
]
BackTranslateOpt = Annotated[
    bool,
    typer.Option(
        "--back-translate/--no-back-translate",
        help="For non-English reports: translate back to English and cross-check it.",
    ),
]
ContextOpt = Annotated[
    str | None, typer.Option(help="Clinical indication / context (treated as untrusted data).")
]
EhrOpt = Annotated[
    Path | None, typer.Option(help="FHIR R4 bundle (JSON): adds a concise patient context.")
]
AskOpt = Annotated[
    list[str] | None,
    typer.Option("--ask", help="A follow-up question after the report (repeatable)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the Interpretation JSON.")]
FhirOpt = Annotated[
    Path | None,
    typer.Option("--fhir", help="Also write the FHIR R4 DiagnosticReport (JSON) to this file."),
]
SrOpt = Annotated[
    Path | None,
    typer.Option(
        "--sr",
        help="Also write DICOM SR objects (findings TID 1500, report TID 2000) "
        "to this folder; the current images must be DICOM.",
    ),
]
OverlayOpt = Annotated[str, typer.Option(help="With --sr: none, gsps or sc (a visual draft).")]
NoScoresOpt = Annotated[
    bool, typer.Option("--no-scores", help="Skip the encoder (no finding scores or cross-check).")
]
MaxTokensOpt = Annotated[int | None, typer.Option(help="Report length cap (tokens).")]
ModalityOpt = Annotated[
    str,
    typer.Option(
        help="cxr (default: gate, scores, cross-check, urgency), dermatology, pathology, "
        "fundus or ct (report prompt + scores where a label set exists)."
    ),
]
SimilarOpt = Annotated[
    int,
    typer.Option(help="Similar cases to show from the case library, when one exists (0: none)."),
]

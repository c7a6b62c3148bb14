"""Options of `medlens interpret` for MedGemma 1.5's grounding and prior comparison
(kept here so that cli/interpret.py stays short)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from medlens.errors import ConfigError
from medlens.tasks.interpret.comparison import check_prior_date

if TYPE_CHECKING:
    from medlens.tasks.interpret.study import Study

GroundOpt = Annotated[
    bool, typer.Option("--ground", help="Also ask for a box per finding the report names.")
]
PriorReportOpt = Annotated[
    Path | None,
    typer.Option("--prior-report", help="Text file with the prior study's report."),
]
PriorDateOpt = Annotated[
    str | None,
    typer.Option("--prior-date", help="Date of the prior: YYYY-MM-DD, or e.g. '14 days earlier'."),
]
CompareOpt = Annotated[
    bool | None,
    typer.Option(
        "--compare/--no-compare",
        help="Ask for a change per finding against the prior (default: on when "
        "--prior-report or --prior-date is given).",
    ),
]
MAX_REPORT_BYTES = 64 * 1024


def read_prior_report(path: Path | None) -> str | None:
    if path is None:
        return None
    if not path.is_file():
        raise ConfigError(f"--prior-report: no file {path}.")
    data = path.read_bytes()
    if len(data) > MAX_REPORT_BYTES:
        raise ConfigError(f"--prior-report: {path} is over {MAX_REPORT_BYTES // 1024} KiB.")
    return data.decode("utf-8", errors="replace").strip() or None


def with_prior(study: Study, report: Path | None, date: str | None) -> Study:
    """The study with the prior's report and date attached (when given)."""
    from medlens.tasks.interpret.study import StudyPrior

    prior = StudyPrior(report=read_prior_report(report), date=check_prior_date(date))
    return study if prior.is_empty() else replace(study, prior=prior)

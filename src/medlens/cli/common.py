"""Helpers shared by CLI modules."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from medlens.config import Settings, load_settings
from medlens.errors import ConfigError, MedLensError

# One flag name per concept across commands: --generator (the report / text model) and
# --encoder (the image-text model). `--model` stays as a hidden alias where a command
# used it before, so old scripts keep working.
GeneratorOpt = Annotated[
    str | None,
    typer.Option(
        "--generator", help="Generator: registry id or PATH (default: settings.generator)."
    ),
]
EncoderOpt = Annotated[
    str | None,
    typer.Option("--encoder", help="Encoder: registry id or PATH (default: settings.encoder)."),
]
LegacyModelOpt = Annotated[
    str | None, typer.Option("--model", hidden=True, help="Old name of this command's model flag.")
]
VerboseOpt = Annotated[
    bool,
    typer.Option(
        "--verbose",
        help="Also show third-party logs and progress bars (transformers); "
        "or set MEDLENS_VERBOSE=1.",
    ),
]


def model_flag(value: str | None, legacy: str | None, name: str) -> str | None:
    """The model id given as `name` or as its hidden old alias `--model` (not both, differing)."""
    if value is not None and legacy is not None and value != legacy:
        raise ConfigError(f"{name} and --model name the same model; give only {name}.")
    return value if value is not None else legacy


def apply_verbose(verbose: bool) -> None:
    """Keep third-party logs for the rest of this process when --verbose was given."""
    from medlens.models.quiet import set_verbose

    set_verbose(verbose)


def settings_from(**overrides: Any) -> Settings:
    return load_settings(**overrides)


def fail(err: MedLensError | str, code: int = 2) -> None:
    """Print a one-line error and exit non-zero (no traceback)."""
    typer.echo(f"error: {err}", err=True)
    raise typer.Exit(getattr(err, "exit_code", code))


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")

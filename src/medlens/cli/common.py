"""Helpers shared by CLI modules."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

from medlens.config import Settings, load_settings
from medlens.errors import MedLensError


def settings_from(**overrides: Any) -> Settings:
    return load_settings(**overrides)


def fail(err: MedLensError | str, code: int = 2) -> None:
    """Print a one-line error and exit non-zero (no traceback)."""
    typer.echo(f"error: {err}", err=True)
    raise typer.Exit(getattr(err, "exit_code", code))


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")

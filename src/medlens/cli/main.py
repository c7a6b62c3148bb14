"""`medlens` entry point.

Each module in `medlens.cli` (other than this one and `common`) defines
`register(app: typer.Typer) -> None`; modules are discovered so command groups can be
added without editing this file. Errors become one-line messages, never tracebacks.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

import medlens.cli as cli_pkg
from medlens.errors import MedLensError

app = typer.Typer(
    name="medlens",
    help="MedLens: local-first MedGemma / MedSigLIP tools. Not a medical device.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_SKIP = {"main", "common"}


def _register_all() -> None:
    for mod in sorted(pkgutil.iter_modules(cli_pkg.__path__), key=lambda m: m.name):
        if mod.name in _SKIP or mod.name.startswith("_"):
            continue
        module = importlib.import_module(f"medlens.cli.{mod.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


_register_all()


def main() -> None:
    try:
        app()
    except MedLensError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()

"""`medlens models list|info|pull|make-test`: what models exist, where, and getting them.

Everything here stays torch-free except `make-test` (which builds checkpoints).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from medlens.cli.common import print_json, settings_from
from medlens.errors import ConfigError, ModelNotAvailable

models_app = typer.Typer(
    help="Model registry: list, inspect, download, build test models.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _status_row(record: Any) -> dict[str, Any]:
    from medlens.models.hub import local_status

    st = local_status(record)
    return {
        "id": record.id,
        "kind": record.kind,
        "source": record.source,
        "available": st.available,
        "where": st.where,
        "size_bytes": st.size_bytes,
        "is_test": record.is_test,
        "gated": record.gated,
        "missing": st.detail if not st.available else "",
    }


@models_app.command("list")
def list_models(as_json: JsonOpt = False) -> None:
    """Registry entries and whether each one's weights are on this machine."""
    from medlens.models.registry import load_registry

    settings = settings_from()
    rows = [_status_row(r) for r in load_registry(settings)]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        mark = "ok     " if row["available"] else "missing"
        tag = " [test model]" if row["is_test"] else (" [gated]" if row["gated"] else "")
        where = row["where"] or row["source"]
        size = ""
        if row["available"] and row["size_bytes"]:
            size = f" ({_human_size(row['size_bytes'])})"
        typer.echo(f"{mark}  {row['id']:<34} {row['kind']:<9} {where}{size}{tag}")
    missing = [r for r in rows if not r["available"]]
    if missing:
        typer.echo(
            "\nMissing models: `medlens models info ID` says how to get one; "
            "test models: `medlens models make-test`."
        )


@models_app.command("info")
def info(
    model: Annotated[str, typer.Argument(help="Registry id or PATH.")], as_json: JsonOpt = False
) -> None:
    """One record (preprocessing, prompt format, dtype) and its local status."""
    from medlens.models.backends import SCHEME_BACKEND, backend_status
    from medlens.models.registry import load_registry

    settings = settings_from()
    registry = load_registry(settings)
    if model in registry or "@" not in model:
        record = registry.resolve(model)
    else:  # ID@int8 / ID@int4: the quantized variant that `medlens gate` reports on
        from medlens.evaluation.gate import gate_record

        record = gate_record(model, settings, kind=None)
    data = record.to_dict()
    row = _status_row(record)
    gates = _gate_reports(record, settings)
    data["gate_reports"] = {k: {"report": str(p), **d} for k, (p, d) in gates.items()}
    backend = SCHEME_BACKEND.get(record.parsed_source.scheme, "")
    available, extra = backend_status().get(backend, (False, ""))
    data["local"] = {k: row[k] for k in ("available", "where", "size_bytes", "missing")}
    data["backend"] = {"name": backend, "installed": available, "extra": extra}
    if record.kind != "encoder":
        from dataclasses import asdict

        from medlens.models.fastpath.cpu_default import describe

        data["path_here"] = asdict(describe(record, settings.device))
    if as_json:
        print_json(data)
        return
    for key in (
        "id",
        "kind",
        "source",
        "revision",
        "modalities",
        "prompt_format",
        "dtype",
        "context_length",
        "gated",
        "thinking",
        "is_test",
        "description",
    ):
        value = data[key]
        if isinstance(value, list | tuple):
            value = ", ".join(value)
        typer.echo(f"{key:<15} {value}")
    pre = data.get("preprocess")
    if pre:
        typer.echo(
            f"{'preprocess':<15} {pre['size']}x{pre['size']}, pad_to_square={pre['pad_to_square']}"
            f" (pad {pre['pad_value']}), {pre['resample']}, antialias={pre['antialias']},"
            f" mean={list(pre['mean'])} std={list(pre['std'])}"
        )
    typer.echo(
        f"{'backend':<15} {backend} ({'installed' if available else 'not installed'}:"
        f" pip install 'medlens[{extra}]')"
    )
    if "path_here" in data:
        p = data["path_here"]
        typer.echo(f"{'CPU path':<15} {p['engine']}, {p['weights']} weights: {p['why']}.")
        typer.echo(f"{'switch':<15} {p['switch']}")
    if row["available"]:
        typer.echo(f"{'local':<15} {row['where']} ({_human_size(row['size_bytes'])})")
    else:
        typer.echo(f"{'local':<15} missing: {row['missing']}")
    _echo_gates(record, gates)
    if record.is_test:
        typer.echo("TEST MODEL: output is not medical.")


def _gate_reports(record: Any, settings: Any) -> dict[str, Any]:
    """Latest `medlens gate` reports for this model (and its @int8/@int4 variants), and
    the report an adapter entry names (options.adapter.gate_report), if any."""
    import json

    from medlens.evaluation.gate_report import reports_for

    found = reports_for(settings.data_dir, record.id)
    named = str((record.options.get("adapter") or {}).get("gate_report") or "")
    if named and record.id not in found and Path(named).expanduser().is_file():
        path = Path(named).expanduser()
        try:
            found[record.id] = (path, json.loads(path.read_text(encoding="utf-8")))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"Gate report {path} is not valid JSON ({exc.msg}).") from exc
    return found


def _echo_gates(record: Any, gates: dict[str, Any]) -> None:
    from medlens.evaluation.gate_report import summary_lines

    for path, report in gates.values():
        lines = summary_lines(report)
        typer.echo(f"{'gate':<15} {lines[0]}")
        for line in [*lines[1:], f"report: {path}"]:
            typer.echo(f"{'':<15} {line}")
    adapted = record.kind == "adapter" or str(record.options.get("quantize", "none")) != "none"
    if adapted and record.id not in gates:
        typer.echo(f"{'gate':<15} no gate report yet: run `medlens gate BASE {record.id}`")


@models_app.command("pull")
def pull(model: Annotated[str, typer.Argument(help="Registry id (hf: source).")]) -> None:
    """Download a model's weights into the Hugging Face cache (needs network + token)."""
    from medlens.models.hub import local_status
    from medlens.models.hub import pull as hub_pull
    from medlens.models.registry import load_registry

    settings = settings_from()
    record = load_registry(settings).resolve(model)
    if record.is_test:
        raise ModelNotAvailable(
            f"{record.id!r} is a test model: build it with `medlens models make-test`."
        )
    token = settings.hf_token.get_secret_value() if settings.hf_token else None
    path = hub_pull(record, token=token)
    st = local_status(record)
    typer.echo(f"{record.id}: {path} ({_human_size(st.size_bytes)})")


@models_app.command("make-test")
def make_test(
    directory: Annotated[
        Path | None, typer.Argument(help="Where to build (default: <data_dir>/test-models).")
    ] = None,
    no_realtext: Annotated[
        bool, typer.Option("--no-realtext", help="Only the tiny random models (seconds).")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if current.")] = False,
) -> None:
    """Build the test models: tiny random MedGemma/MedSigLIP + Gemma 3 270M real-text ones."""
    import time

    from medlens.models.backends import require
    from medlens.models.testmodels import make_test_models

    require("transformers")
    target = directory or settings_from().test_models_dir
    start = time.perf_counter()
    built = make_test_models(target, realtext=not no_realtext, force=force)
    for name, path in built.items():
        typer.echo(f"{name:<20} {path}")
    typer.echo(
        f"Built/checked {len(built)} test models in {time.perf_counter() - start:.1f} s. "
        "TEST MODELS: output is not medical."
    )


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")

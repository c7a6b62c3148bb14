"""`medlens gate BASE CANDIDATE`: the paired quality gate for a quantization or fine-tune.

Exit codes: 0 the gate passed, 1 it failed, 2 bad input or an error (one-line message).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from medlens.cli.common import print_json, settings_from
from medlens.errors import ConfigError

SUITE_HELP = (
    "QA suite TASK[:N] or TASK:N:FILE (tasks: medqa, medmcqa, pubmedqa; N items; repeatable). "
    "Default: medqa with --limit."
)


def _suites(values: list[str] | None, limit: int | None, role: str) -> list:  # type: ignore[type-arg]
    from medlens.evaluation.gate import Suite

    out = []
    for text in values or []:
        task, _, rest = text.partition(":")
        n_text, _, file = rest.partition(":")
        try:
            n = int(n_text) if n_text else limit
        except ValueError:
            raise ConfigError(f"Bad suite {text!r}: use TASK, TASK:N or TASK:N:FILE.") from None
        out.append(Suite(task.strip().lower(), Path(file) if file else None, n, role))  # type: ignore[arg-type]
    return out


def _print(report_data: dict, as_json: bool, stored: Path | None) -> None:  # type: ignore[type-arg]
    from medlens.evaluation.gate_report import to_markdown

    if as_json:
        print_json(report_data)
    else:
        typer.echo(to_markdown(report_data))
    if stored is not None:
        typer.echo(f"report stored: {stored} (+ .md)", err=as_json)


def gate(
    base: Annotated[
        str | None, typer.Argument(help="Base: registry id or PATH[@int8|@int4].")
    ] = None,
    candidate: Annotated[
        str | None, typer.Argument(help="Candidate: registry id or PATH[@int8|@int4].")
    ] = None,
    suite: Annotated[list[str] | None, typer.Option("--suite", help=SUITE_HELP)] = None,
    target: Annotated[
        list[str] | None,
        typer.Option("--target", help="Fine-tune target task TASK:N:FILE (held-out split)."),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Items per suite (default all).")] = None,
    kind: Annotated[str, typer.Option(help="auto | quantization | finetune.")] = "auto",
    dtype: Annotated[str | None, typer.Option(help="Load dtype for both (e.g. bfloat16).")] = None,
    kl: Annotated[
        bool | None, typer.Option("--kl/--no-kl", help="KL comparison (default: quantization).")
    ] = None,
    kl_texts: Annotated[Path | None, typer.Option(help="KL texts: .txt or .jsonl {text}.")] = None,
    kl_n: Annotated[int, typer.Option(min=1, help="Number of KL texts.")] = 16,
    kl_max_tokens: Annotated[int, typer.Option(min=2, help="Tokens per KL text.")] = 256,
    top_k: Annotated[int, typer.Option(min=1, help="Top-k for OpenAI-compatible KL.")] = 20,
    thresholds: Annotated[Path | None, typer.Option(help="Thresholds TOML override.")] = None,
    n_boot: Annotated[int, typer.Option(min=100, help="Bootstrap resamples.")] = 2000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    work_dir: Annotated[Path | None, typer.Option(help="Run folders (resumable, shared).")] = None,
    from_predictions: Annotated[
        tuple[Path, Path] | None,
        typer.Option("--from-predictions", help="BASE.jsonl CAND.jsonl: gate fixed predictions."),
    ] = None,
    role: Annotated[str, typer.Option(help="--from-predictions: general | target.")] = "general",
    no_store: Annotated[bool, typer.Option("--no-store", help="Do not store the report.")] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Also write JSON (+ .md) here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Paired quality gate: accuracy of each, difference with a paired bootstrap CI,
    McNemar exact, flips; KL/top-1/ln(PPL ratio) for quantization. Exit 1 if it fails."""
    from medlens.evaluation import gate as g
    from medlens.evaluation.gate_config import load_thresholds
    from medlens.evaluation.gate_report import _json, store, to_markdown

    if kind not in ("auto", "quantization", "finetune"):
        raise ConfigError("--kind must be auto, quantization or finetune.")
    if role not in ("general", "target"):
        raise ConfigError("--role must be general or target.")
    settings = settings_from()
    th = load_thresholds(thresholds, settings.data_dir)
    command = "medlens " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if from_predictions is not None:
        if base or candidate:
            raise ConfigError("Give BASE CANDIDATE or --from-predictions, not both.")
        k = "quantization" if kind == "auto" else kind
        report = g.gate_from_predictions(
            from_predictions[0],
            from_predictions[1],
            th,
            kind=k,
            role=role,  # type: ignore[arg-type]
            n_boot=n_boot,
            seed=seed,
        )
    else:
        if not base or not candidate:
            raise ConfigError("Give BASE and CANDIDATE (or --from-predictions B.jsonl C.jsonl).")
        suites = _suites(suite, limit, "general") + _suites(target, limit, "target")
        if not suite:
            suites.insert(0, g.Suite("medqa", None, limit, "general"))
        cfg = g.GateConfig(
            base=base,
            candidate=candidate,
            suites=suites,
            thresholds=th,
            kind=kind,  # type: ignore[arg-type]
            dtype=dtype,
            kl=kl,
            kl_texts=kl_texts,
            kl_n=kl_n,
            kl_max_tokens=kl_max_tokens,
            top_k=top_k,
            n_boot=n_boot,
            seed=seed,
            work_dir=work_dir,
            progress=not quiet,
            meta={"command": command},
        )
        report = g.run_gate(cfg, settings)
    report.meta.setdefault("command", command)
    data = report.to_dict()
    stored = None if no_store or from_predictions else store(report, settings.data_dir)
    if output is not None:
        output.write_text(_json(data), encoding="utf-8")
        output.with_suffix(".md").write_text(to_markdown(data), encoding="utf-8")
    _print(data, as_json, stored)
    raise typer.Exit(0 if report.passed else 1)


def register(app: typer.Typer) -> None:
    app.command("gate")(gate)

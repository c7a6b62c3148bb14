"""`medlens gate BASE CANDIDATE`: the paired quality gate for a quantization or fine-tune.

Exit codes: 0 the gate passed, 1 it failed, 2 bad input or an error (one-line message).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from medlens.cli.common import print_json, settings_from
from medlens.errors import ConfigError

if TYPE_CHECKING:
    from medlens.config import Settings

SUITE_HELP = (
    "QA suite TASK[:N] or TASK:N:FILE (tasks: medqa, medmcqa, pubmedqa; N items; repeatable). "
    "Default: medqa with --limit."
)

# The command's options, declared once here so that `gate` reads as its logic.
BaseArg = Annotated[str | None, typer.Argument(help="Base: registry id or PATH[@int8|@int4].")]
CandidateArg = Annotated[
    str | None, typer.Argument(help="Candidate: registry id or PATH[@int8|@int4].")
]
SuiteOpt = Annotated[list[str] | None, typer.Option("--suite", help=SUITE_HELP)]
TargetOpt = Annotated[
    list[str] | None,
    typer.Option("--target", help="Fine-tune target task TASK:N:FILE (held-out split)."),
]
LimitOpt = Annotated[int | None, typer.Option(min=1, help="Items per suite (default all).")]
KindOpt = Annotated[str, typer.Option(help="auto | quantization | finetune.")]
DtypeOpt = Annotated[str | None, typer.Option(help="Load dtype for both (e.g. bfloat16).")]
KlOpt = Annotated[
    bool | None, typer.Option("--kl/--no-kl", help="KL comparison (default: quantization).")
]
KlTextsOpt = Annotated[Path | None, typer.Option(help="KL texts: .txt or .jsonl {text}.")]
KlNOpt = Annotated[int, typer.Option(min=1, help="Number of KL texts.")]
KlMaxTokensOpt = Annotated[int, typer.Option(min=2, help="Tokens per KL text.")]
TopKOpt = Annotated[int, typer.Option(min=1, help="Top-k for OpenAI-compatible KL.")]
ThresholdsOpt = Annotated[Path | None, typer.Option(help="Thresholds TOML override.")]
NBootOpt = Annotated[int, typer.Option(min=100, help="Bootstrap resamples.")]
SeedOpt = Annotated[int, typer.Option(help="Bootstrap seed.")]
WorkDirOpt = Annotated[Path | None, typer.Option(help="Run folders (resumable, shared).")]
FromPredictionsOpt = Annotated[
    tuple[Path, Path] | None,
    typer.Option("--from-predictions", help="BASE.jsonl CAND.jsonl: gate fixed predictions."),
]
RoleOpt = Annotated[str, typer.Option(help="--from-predictions: general | target.")]
NoStoreOpt = Annotated[bool, typer.Option("--no-store", help="Do not store the report.")]
OutputOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Also write JSON (+ .md) here.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


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
    base: BaseArg = None,
    candidate: CandidateArg = None,
    suite: SuiteOpt = None,
    target: TargetOpt = None,
    limit: LimitOpt = None,
    kind: KindOpt = "auto",
    dtype: DtypeOpt = None,
    kl: KlOpt = None,
    kl_texts: KlTextsOpt = None,
    kl_n: KlNOpt = 16,
    kl_max_tokens: KlMaxTokensOpt = 256,
    top_k: TopKOpt = 20,
    thresholds: ThresholdsOpt = None,
    n_boot: NBootOpt = 2000,
    seed: SeedOpt = 0,
    work_dir: WorkDirOpt = None,
    from_predictions: FromPredictionsOpt = None,
    role: RoleOpt = "general",
    no_store: NoStoreOpt = False,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Paired quality gate: accuracy of each, difference with a paired bootstrap CI,
    McNemar exact, flips; KL/top-1/ln(PPL ratio) for quantization. Exit 1 if it fails."""
    from medlens.evaluation.gate_config import load_thresholds

    _check_choices(kind, role)
    settings = settings_from()
    th = load_thresholds(thresholds, settings.data_dir)
    command = "medlens " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if from_predictions is not None:
        if base or candidate:
            raise ConfigError("Give BASE CANDIDATE or --from-predictions, not both.")
        report = _report_from_predictions(from_predictions, th, kind, role, n_boot, seed)
    else:
        if not base or not candidate:
            raise ConfigError("Give BASE and CANDIDATE (or --from-predictions B.jsonl C.jsonl).")
        report = _run_live(
            settings,
            base=base,
            candidate=candidate,
            suites=_all_suites(suite, target, limit),
            thresholds=th,
            kind=kind,
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
    report.meta.setdefault("command", command)
    _finish(report, settings, no_store or from_predictions is not None, output, as_json)


def _check_choices(kind: str, role: str) -> None:
    """Reject an unknown --kind or --role before any work."""
    if kind not in ("auto", "quantization", "finetune"):
        raise ConfigError("--kind must be auto, quantization or finetune.")
    if role not in ("general", "target"):
        raise ConfigError("--role must be general or target.")


def _report_from_predictions(
    paths: tuple[Path, Path], th: Any, kind: str, role: str, n_boot: int, seed: int
) -> Any:
    """Gate two fixed prediction files (no models loaded)."""
    from medlens.evaluation import gate as g

    return g.gate_from_predictions(
        paths[0],
        paths[1],
        th,
        kind="quantization" if kind == "auto" else kind,
        role=role,  # type: ignore[arg-type]
        n_boot=n_boot,
        seed=seed,
    )


def _all_suites(suite: list[str] | None, target: list[str] | None, limit: int | None) -> list:  # type: ignore[type-arg]
    """General and target suites; medqa first when no --suite was given."""
    from medlens.evaluation import gate as g

    suites = _suites(suite, limit, "general") + _suites(target, limit, "target")
    if not suite:
        suites.insert(0, g.Suite("medqa", None, limit, "general"))
    return suites


def _run_live(settings: Settings, **config: Any) -> Any:
    """Run both models on the suites (and KL texts) and gate the results."""
    from medlens.evaluation import gate as g

    return g.run_gate(g.GateConfig(**config), settings)


def _finish(
    report: Any, settings: Settings, skip_store: bool, output: Path | None, as_json: bool
) -> None:
    """Store, write and print the report; exit 0 if it passed, else 1."""
    from medlens.evaluation.gate_report import _json, store, to_markdown

    data = report.to_dict()
    stored = None if skip_store else store(report, settings.data_dir)
    if output is not None:
        output.write_text(_json(data), encoding="utf-8")
        output.with_suffix(".md").write_text(to_markdown(data), encoding="utf-8")
    _print(data, as_json, stored)
    raise typer.Exit(0 if report.passed else 1)


def register(app: typer.Typer) -> None:
    app.command("gate")(gate)

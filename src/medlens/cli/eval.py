"""`medlens eval ...`: QA benchmarks, run comparison, chest X-ray and report metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from medlens.cli.common import print_json, settings_from
from medlens.errors import ConfigError

eval_app = typer.Typer(
    help="Evaluate models: MedQA / MedMCQA / PubMedQA accuracy, paired comparison, "
    "chest X-ray classification metrics and report metrics.",
    no_args_is_help=True,
)

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Registry id or PATH of the model.")]
DataOpt = Annotated[Path | None, typer.Option(help="JSONL file (default: the shared data file).")]
OutOpt = Annotated[Path | None, typer.Option(
    "--output", "-o", help="Run folder (default: ./eval-runs/<task>-<model>-<scoring>-<shots>shot).")]
LimitOpt = Annotated[int | None, typer.Option(min=1, help="Score only the first N items.")]
ScoringOpt = Annotated[str, typer.Option(
    help="loglik (log-probabilities of the answer labels), generate (strict answer "
    "extraction) or auto (loglik when the backend supports it).")]
ShotsOpt = Annotated[int, typer.Option(min=0, max=10, help="Few-shot examples per question.")]
SeedOpt = Annotated[int, typer.Option(help="Seed for few-shot selection and sampling.")]
PromptOpt = Annotated[str | None, typer.Option(help="Prompt name (e.g. mcq-v1) or TOML file.")]
FewshotOpt = Annotated[Path | None, typer.Option(help="JSONL pool for few-shot examples.")]
MaxTokOpt = Annotated[int, typer.Option(min=1, help="Token cap for --scoring generate.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-._" else "-" for c in text).strip("-")


def run_qa(task_name: str, model: str, data: Path | None, output: Path | None,
           limit: int | None, scoring: str, shots: int, seed: int, prompt: str | None,
           fewshot_data: Path | None, max_new_tokens: int, quiet: bool) -> None:
    from medlens.evaluation.backend import load_generator_for
    from medlens.evaluation.datasets import get_task, resolve_data_file, resolve_fewshot_file
    from medlens.evaluation.prompting import load_eval_prompt
    from medlens.evaluation.runner import RunConfig, run_eval

    if scoring not in ("auto", "loglik", "generate"):
        raise ConfigError("--scoring must be loglik, generate or auto.")
    task = get_task(task_name)
    data_file = resolve_data_file(task, data)
    items = task.reader(data_file)  # read before loading a model: fail fast on bad data
    fs_file = resolve_fewshot_file(task, data_file, fewshot_data)
    pool = items if fs_file == data_file else (task.reader(fs_file) if shots else [])
    eval_prompt = load_eval_prompt(prompt or task.prompt)
    out = output or Path("eval-runs") / _slug(f"{task.name}-{model}-{scoring}-{shots}shot")
    settings = settings_from()
    backend = load_generator_for(settings, model)
    cfg = RunConfig(task=task, model=model, data_file=data_file, fewshot_file=fs_file,
                    output=out, prompt=eval_prompt, scoring=scoring,  # type: ignore[arg-type]
                    shots=shots, seed=seed, limit=limit, max_new_tokens=max_new_tokens)
    res = run_eval(cfg, items, pool, backend, progress=not quiet)
    meta = res.metadata
    typer.echo(f"{task.name} | {model} | scoring={meta['scoring']} shots={shots} "
               f"prompt={eval_prompt.tag} | scored {res.scored_now}, resumed {res.skipped}")
    typer.echo(res.summary.line())
    typer.echo(f"run folder: {out}")


def _qa_command(task_name: str):  # type: ignore[no-untyped-def]
    def command(
        model: ModelOpt,
        data: DataOpt = None,
        output: OutOpt = None,
        limit: LimitOpt = None,
        scoring: ScoringOpt = "auto",
        shots: ShotsOpt = 0,
        seed: SeedOpt = 0,
        prompt: PromptOpt = None,
        fewshot_data: FewshotOpt = None,
        max_new_tokens: MaxTokOpt = 32,
        quiet: QuietOpt = False,
    ) -> None:
        run_qa(task_name, model, data, output, limit, scoring, shots, seed, prompt,
               fewshot_data, max_new_tokens, quiet)

    command.__doc__ = (f"Accuracy on {task_name} (95 % Wilson CI), per-item records, "
                       "run metadata; resumable.")
    return command


for _name in ("medqa", "medmcqa", "pubmedqa"):
    eval_app.command(_name)(_qa_command(_name))


@eval_app.command("compare")
def compare(
    run_a: Annotated[Path, typer.Argument(help="Run folder (or records.jsonl) A.")],
    run_b: Annotated[Path, typer.Argument(help="Run folder (or records.jsonl) B.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Paired comparison on the items both runs scored (McNemar's test)."""
    from medlens.evaluation.compare import compare_runs

    cmp = compare_runs(run_a, run_b)
    if as_json:
        print_json(cmp.to_dict())
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"Paired comparison on {cmp.n} shared items")
    for col in ("", "accuracy", "95% CI (Wilson)"):
        t.add_column(col)
    for label, acc in (("A " + str(run_a), cmp.acc_a), ("B " + str(run_b), cmp.acc_b)):
        t.add_row(label, f"{acc.value:.1%} ({acc.k}/{acc.n})",
                  f"{acc.ci.low:.1%} - {acc.ci.high:.1%}")
    d = cmp.difference_ci
    t.add_row("A - B", f"{cmp.difference:+.1%}", f"{d.low:+.1%} - {d.high:+.1%} (paired Wald)")
    con = Console()
    con.print(t)
    stat = "" if cmp.test.statistic is None else f", chi2={cmp.test.statistic:.3f}"
    con.print(f"discordant: b (A right, B wrong) = {cmp.b}, c (A wrong, B right) = {cmp.c}; "
              f"both right {cmp.both_correct}, both wrong {cmp.both_wrong}")
    con.print(f"McNemar ({cmp.test.method}{stat}): p = {cmp.test.p_value:.4g}")
    if cmp.only_a or cmp.only_b:
        con.print(f"not shared: {cmp.only_a} items only in A, {cmp.only_b} only in B (ignored)")
    for w in cmp.warnings:
        con.print(f"[yellow]warning:[/] {w}")


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")

"""`medlens eval ...`: QA benchmarks, run comparison, chest X-ray and report metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from medlens.cli.common import print_json, settings_from
from medlens.errors import ConfigError

if TYPE_CHECKING:
    from medlens.evaluation.report_metrics import ChexbertMetrics, ReportMetrics

eval_app = typer.Typer(
    help="Evaluate models: MedQA / MedMCQA / PubMedQA accuracy, paired comparison, "
    "chest X-ray classification metrics and report metrics.",
    no_args_is_help=True,
)

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Registry id or PATH of the model.")]
DataOpt = Annotated[Path | None, typer.Option(help="JSONL file (default: the shared data file).")]
OutOpt = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        help="Run folder (default: ./eval-runs/<task>-<model>-<scoring>-<shots>shot).",
    ),
]
LimitOpt = Annotated[int | None, typer.Option(min=1, help="Score only the first N items.")]
ScoringOpt = Annotated[
    str,
    typer.Option(
        help="loglik (log-probabilities of the answer labels), generate (strict answer "
        "extraction) or auto (loglik when the backend supports it)."
    ),
]
ShotsOpt = Annotated[int, typer.Option(min=0, max=10, help="Few-shot examples per question.")]
SeedOpt = Annotated[int, typer.Option(help="Seed for few-shot selection and sampling.")]
PromptOpt = Annotated[str | None, typer.Option(help="Prompt name (e.g. mcq-v1) or TOML file.")]
FewshotOpt = Annotated[Path | None, typer.Option(help="JSONL pool for few-shot examples.")]
MaxTokOpt = Annotated[int, typer.Option(min=1, help="Token cap for --scoring generate.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


def _json_safe(obj: object) -> object:
    """NaN/inf (undefined AUC or F1) -> null: the files and stdout stay strict JSON."""
    import math

    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-._" else "-" for c in text).strip("-")


def run_qa(
    task_name: str,
    model: str,
    data: Path | None,
    output: Path | None,
    limit: int | None,
    scoring: str,
    shots: int,
    seed: int,
    prompt: str | None,
    fewshot_data: Path | None,
    max_new_tokens: int,
    quiet: bool,
) -> None:
    from medlens.evaluation.datasets import get_task, resolve_data_file, resolve_fewshot_file
    from medlens.evaluation.prompting import load_eval_prompt
    from medlens.evaluation.runner import RunConfig, run_eval
    from medlens.models.session import default_session

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
    backend = default_session().generator(model, settings)
    cfg = RunConfig(
        task=task,
        model=model,
        data_file=data_file,
        fewshot_file=fs_file,
        output=out,
        prompt=eval_prompt,
        scoring=scoring,  # type: ignore[arg-type]
        shots=shots,
        seed=seed,
        limit=limit,
        max_new_tokens=max_new_tokens,
    )
    res = run_eval(cfg, items, pool, backend, progress=not quiet)
    meta = res.metadata
    typer.echo(
        f"{task.name} | {model} | scoring={meta['scoring']} shots={shots} "
        f"prompt={eval_prompt.tag} | scored {res.scored_now}, resumed {res.skipped}"
    )
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
        run_qa(
            task_name,
            model,
            data,
            output,
            limit,
            scoring,
            shots,
            seed,
            prompt,
            fewshot_data,
            max_new_tokens,
            quiet,
        )

    command.__doc__ = (
        f"Accuracy on {task_name} (95 % Wilson CI), per-item records, run metadata; resumable."
    )
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
        t.add_row(
            label, f"{acc.value:.1%} ({acc.k}/{acc.n})", f"{acc.ci.low:.1%} - {acc.ci.high:.1%}"
        )
    d = cmp.difference_ci
    t.add_row("A - B", f"{cmp.difference:+.1%}", f"{d.low:+.1%} - {d.high:+.1%} (paired Wald)")
    con = Console()
    con.print(t)
    stat = "" if cmp.test.statistic is None else f", chi2={cmp.test.statistic:.3f}"
    con.print(
        f"discordant: b (A right, B wrong) = {cmp.b}, c (A wrong, B right) = {cmp.c}; "
        f"both right {cmp.both_correct}, both wrong {cmp.both_wrong}"
    )
    con.print(f"McNemar ({cmp.test.method}{stat}): p = {cmp.test.p_value:.4g}")
    if cmp.only_a or cmp.only_b:
        con.print(f"not shared: {cmp.only_a} items only in A, {cmp.only_b} only in B (ignored)")
    for w in cmp.warnings:
        con.print(f"[yellow]warning:[/] {w}")


@eval_app.command("cxr")
def cxr(
    labels: Annotated[
        Path,
        typer.Option(
            help="Labels CSV (NIH labels.csv 0/1 columns, or a "
            "COVID-style metadata.csv with `finding`)."
        ),
    ],
    scores: Annotated[
        Path, typer.Option(help="Scores CSV/JSONL: image_file + one column per label.")
    ],
    label: Annotated[
        list[str] | None,
        typer.Option("--label", help="Only these labels (repeatable); default: all in both files."),
    ] = None,
    threshold: Annotated[float, typer.Option(help="score >= threshold counts as positive.")] = 0.5,
    n_boot: Annotated[int, typer.Option(min=0, help="Bootstrap replicates for CIs.")] = 1000,
    seed: SeedOpt = 0,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write JSON here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Per-label AUC, F1 at a threshold, macro averages, bootstrap CIs."""
    from medlens.evaluation.cxr import classification_report
    from medlens.evaluation.cxr_io import join, read_labels, read_scores

    y, s, keys = join(read_labels(labels), read_scores(scores), list(label) if label else None)
    rep = classification_report(y, s, threshold=threshold, n_boot=n_boot, seed=seed)
    data = _json_safe(
        {
            "labels_file": str(labels),
            "scores_file": str(scores),
            "n_images": len(keys),
            "threshold": threshold,
            **rep.to_dict(),
        }
    )
    if output:
        output.write_text(json.dumps(data, indent=2, default=str, allow_nan=False) + "\n")
    if as_json:
        print_json(data)
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{len(keys)} images, threshold {threshold}, {n_boot} bootstrap replicates")
    for col in ("label", "positives", "AUC", "95% CI", "precision", "recall", "F1", "95% CI"):
        t.add_column(col)
    for row in rep.rows():
        t.add_row(*row)
    Console().print(t)


def _read_texts(path: Path, column: str | None = None) -> dict[str, dict[str, str]]:
    """{id: row} from JSONL or CSV (id column: id, study_id or image_file)."""
    import csv

    from medlens.errors import DataError

    if not path.is_file():
        raise DataError(f"File not found: {path}")
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    else:
        try:
            rows = [
                json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()
            ]
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSONL ({exc.msg}).") from exc
    out = {}
    for i, r in enumerate(rows):
        key = next((str(r[k]) for k in ("id", "study_id", "image_file") if r.get(k)), str(i))
        out[key] = r
    return out


@eval_app.command("reports")
def reports(
    pairs: Annotated[
        Path | None,
        typer.Option(help="JSONL/CSV with `generated` and `reference` text per row (and an `id`)."),
    ] = None,
    generated: Annotated[
        Path | None, typer.Option(help="JSONL/CSV of generated reports (`id`, `report` or `text`).")
    ] = None,
    reference: Annotated[
        Path | None,
        typer.Option(help="JSONL/CSV of reference reports, joined to --generated by id."),
    ] = None,
    uncertain: Annotated[
        str, typer.Option(help="Uncertain findings count as negative (default) or positive.")
    ] = "negative",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write JSON here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """CheXpert-style label F1 (rule-based labeler), BLEU-4 and ROUGE-L; offline.

    CheXbert F1 is added when MEDLENS_CHEXBERT_CHECKPOINT (chexbert.pth) and
    MEDLENS_CHEXBERT_BERT (folder with bert-base-uncased config.json + vocab.txt) are set.
    """
    from medlens.evaluation import chexbert
    from medlens.evaluation.report_metrics import (
        chexbert_metrics,
        model_metrics_status,
        report_metrics,
    )

    if uncertain not in ("negative", "positive"):
        raise ConfigError("--uncertain must be negative or positive.")
    gens, refs = _report_pairs(pairs, generated, reference)
    m = report_metrics(gens, refs, uncertain=uncertain)  # type: ignore[arg-type]
    cb = None
    # Opting in (checkpoint env set) makes a broken setup an error, not a silent skip.
    if chexbert.requested():
        cb = chexbert_metrics(gens, refs, uncertain=uncertain)  # type: ignore[arg-type]
    status = model_metrics_status()
    extra = {"chexbert": cb.to_dict()} if cb else {}
    data = _json_safe({**m.to_dict(), **extra, "model_metrics": status})
    if output:
        output.write_text(json.dumps(data, indent=2, default=str, allow_nan=False) + "\n")
    if as_json:
        print_json(data)
        return
    _echo_report_metrics(m, cb, status, uncertain)


def _field(row: dict, *names: str) -> str:
    """The first of `names` that `row` holds as text."""
    from medlens.errors import DataError

    for n in names:
        if isinstance(row.get(n), str):
            return row[n]
    raise DataError(f"Row {row.get('id', '?')} has none of the fields {names}.")


def _report_pairs(
    pairs: Path | None, generated: Path | None, reference: Path | None
) -> tuple[list[str], list[str]]:
    """(generated, reference) texts from one pairs file or two files joined by id."""
    from medlens.errors import DataError

    if pairs:
        rows = list(_read_texts(pairs).values())
        gens = [_field(r, "generated", "hypothesis") for r in rows]
        refs = [_field(r, "reference", "ground_truth") for r in rows]
    elif generated and reference:
        g, r = _read_texts(generated), _read_texts(reference)
        ids = [k for k in g if k in r]
        if not ids:
            raise DataError("No id is in both --generated and --reference.")
        gens = [_field(g[k], "report", "text", "generated") for k in ids]
        refs = [_field(r[k], "report", "text", "reference") for k in ids]
    else:
        raise ConfigError("Give --pairs FILE, or both --generated and --reference.")
    if not gens:
        raise DataError("No report pairs to score.")
    return gens, refs


def _echo_report_metrics(
    m: ReportMetrics, cb: ChexbertMetrics | None, status: dict[str, str], uncertain: str
) -> None:
    typer.echo(f"{m.n} report pairs (uncertain findings counted {uncertain})")
    n_defined = len(m.per_label) - len(m.undefined_labels)
    typer.echo(
        f"CheXpert-label macro F1 {m.macro_f1:.3f} over {n_defined} "
        f"labels with any positive; top-5 macro F1 {m.macro_f1_top5:.3f}; "
        f"micro F1 {m.micro_f1:.3f}"
    )
    typer.echo(f"BLEU-4 {m.bleu4:.4f} (BP {m.brevity_penalty:.3f}); ROUGE-L F1 {m.rouge_l:.4f}")
    if cb:
        n_cb = len(cb.per_label) - len(cb.undefined_labels)
        typer.echo(
            f"CheXbert-label macro F1 {cb.macro_f1:.3f} over {n_cb} labels with any "
            f"positive; top-5 macro F1 {cb.macro_f1_top5:.3f}; micro F1 {cb.micro_f1:.3f}"
        )
    for name, why in status.items():
        if not (name == "chexbert" and cb):
            typer.echo(f"{name}: {why}")


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")

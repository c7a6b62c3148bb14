"""`medlens eval grounding PRED REF` and `medlens eval comparison PRED REF` (added to the
`eval` group of cli/eval.py; the maths is in medlens.evaluation.localisation)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medlens.cli.common import fail, print_json
from medlens.errors import MedLensError

PredArg = Annotated[Path, typer.Argument(help="Predictions: CSV or a folder of MedLens JSON.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the scores as JSON.")]


def grounding_cmd(
    pred: PredArg,
    ref: Annotated[Path, typer.Argument(help="NIH BBox_List_2017.csv or ImaGenome JSON.")],
    threshold: Annotated[float, typer.Option(help="IoU for a hit.")] = 0.5,
    json_out: JsonOpt = False,
) -> None:
    """Mean IoU, hit rate at IoU >= 0.5 and IoU per label of predicted boxes."""
    from medlens.evaluation.localisation import read_boxes, score_grounding

    try:
        scores = score_grounding(read_boxes(pred), read_boxes(ref), threshold)
    except MedLensError as err:
        fail(err)
        return
    if json_out:
        print_json(scores.as_dict())
        return
    typer.echo(f"mean IoU: {scores.mean_iou:.4f}")
    typer.echo(f"hit rate (IoU >= {threshold}): {scores.hit_rate:.4f}")
    typer.echo(f"reference boxes: {scores.n_reference}")
    for label, value in scores.per_label.items():
        typer.echo(f"  {label}: {value:.4f}")


def comparison_cmd(
    pred: PredArg,
    ref: Annotated[Path, typer.Argument(help="MS-CXR-T temporal classification CSV.")],
    json_out: JsonOpt = False,
) -> None:
    """Accuracy and macro-F1 of change labels (improving / stable / worsening)."""
    from medlens.evaluation.localisation import read_changes, score_changes

    try:
        scores = score_changes(read_changes(pred), read_changes(ref))
    except MedLensError as err:
        fail(err)
        return
    if json_out:
        print_json(scores)
        return
    typer.echo(f"accuracy: {scores['accuracy']:.4f}")
    typer.echo(f"macro-F1: {scores['macro_f1']:.4f}")
    typer.echo(f"labelled pairs: {scores['n']}")


def register(app: typer.Typer) -> None:
    from medlens.cli.eval import eval_app

    eval_app.command("grounding")(grounding_cmd)
    eval_app.command("comparison")(comparison_cmd)

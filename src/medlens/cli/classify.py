"""`medlens classify IMAGE... --labels cxr|FILE`: zero-shot probabilities from the encoder.

With the chest X-ray label set (`cxr`, the default) each image first passes the same chest
X-ray gate as an upload or `interpret` (DICOM tags, pixel statistics, then MedSigLIP's
zero-shot check with real weights): a photo gets a one-line refusal and exit code 3, never
chest X-ray scores. Other label sets (dermatology, fundus...) are not chest X-rays: no gate.

`medlens classify-eval SRC --labels cxr`: AUC per label of zero-shot scores against a
labelled CSV / folder (NIH labels.csv, COVID metadata.csv, generic CSV).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from medlens.cli.common import (
    EncoderOpt,
    LegacyModelOpt,
    VerboseOpt,
    apply_verbose,
    model_flag,
    print_json,
    settings_from,
)

REFUSED_EXIT = 3  # `interpret`'s code when the gate refuses every image: no result to read

LabelsOpt = Annotated[
    str,
    typer.Option(
        "--labels",
        help="Built-in label set (cxr, dermatology, pathology, fundus) or a .toml/.json file.",
    ),
]


def _banner(encoder: object) -> str:
    from medlens.disclaimer import DISCLAIMER, TEST_MODEL_LABEL

    info = getattr(encoder, "info", None)
    test = f"{TEST_MODEL_LABEL}. " if getattr(info, "is_test", False) else ""
    return f"{test}{DISCLAIMER}"


def classify_cmd(
    images: Annotated[list[Path], typer.Argument(help="Image file(s): DICOM, PNG, JPEG.")],
    labels: LabelsOpt = "cxr",
    encoder_id: EncoderOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    verbose: VerboseOpt = False,
    model: LegacyModelOpt = None,
) -> None:
    """Zero-shot label probabilities for each image (MedSigLIP)."""
    apply_verbose(verbose)
    encoder_id = model_flag(encoder_id, model, "--encoder")
    from medlens.imaging.ingest import ingest
    from medlens.models.session import default_session
    from medlens.tasks.classify.zero_shot import load_label_set, zero_shot
    from medlens.tasks.encoding import image_parts

    label_set = load_label_set(labels)
    ingested = [ingest(p) for p in images]  # fail on a bad file before loading the model
    gated = label_set.name == "cxr"
    pixel = _gate(images, ingested, None) if gated else []  # before loading the model too
    encoder, record = default_session().encoder_for(settings_from(), encoder_id)
    parts = image_parts(ingested, record.preprocess)
    if gated:
        _gate(images, ingested, (encoder, parts, pixel))
    probs = zero_shot(encoder, parts, label_set)
    if as_json:
        print_json(
            {
                "label_set": label_set.name,
                "label_set_version": label_set.version,
                "mode": label_set.mode,
                "encoder": encoder.info.model_id,
                "results": [
                    {"image": str(p), "probabilities": pr}
                    for p, pr in zip(images, probs, strict=True)
                ],
                "disclaimer": _banner(encoder),
            }
        )
        return
    for path, pr in zip(images, probs, strict=True):
        _echo_probabilities(path, pr, label_set, encoder.info.model_id)
    typer.echo(_banner(encoder))


def _gate(images: list[Path], ingested: list[Any], model: tuple[Any, Any, Any] | None) -> list:
    """The chest X-ray gate on every image: the model-free half (`model` None), or the
    encoder half with (encoder, its image parts, the model-free decisions). Any refusal:
    one line per refused image, exit code 3 (as `interpret` when every image is refused)."""
    from medlens.cli.common import fail
    from medlens.imaging.gate import gate_chest_xray
    from medlens.tasks.interpret.gate import gate_chest_xray as full_gate

    if model is None:
        decisions = [gate_chest_xray(img) for img in ingested]
    else:
        encoder, parts, pixel = model
        decisions = [
            full_gate(img, encoder, part=part, pixel=dec)
            for img, part, dec in zip(ingested, parts, pixel, strict=True)
        ]
    refused = [(p, d) for p, d in zip(images, decisions, strict=True) if not d.accepted]
    lines = [f"{p.name}: image refused for chest X-ray scores: {d.reason}." for p, d in refused]
    for line in lines[:-1]:
        typer.echo(f"error: {line}", err=True)
    if lines:
        fail(lines[-1], REFUSED_EXIT)
    return decisions


def _echo_probabilities(path: Path, probs: dict[str, float], label_set: Any, encoder: str) -> None:
    typer.echo(
        f"{path.name}  (label set {label_set.name} v{label_set.version}, "
        f"{label_set.mode}, encoder {encoder})"
    )
    items = list(probs.items())
    if label_set.mode == "multiclass":
        items.sort(key=lambda kv: -kv[1])
    width = max(len(k) for k in probs)
    for name, p in items:
        typer.echo(f"  {name:<{width}}  {p:6.3f}")


def classify_eval_cmd(
    source: Annotated[Path, typer.Argument(help="Labelled CSV or a folder holding one.")],
    labels: LabelsOpt = "cxr",
    encoder_id: EncoderOpt = None,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples for the 95 % CI.")] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    verbose: VerboseOpt = False,
    model: LegacyModelOpt = None,
) -> None:
    """AUC per label of zero-shot scores against labelled images."""
    apply_verbose(verbose)
    encoder_id = model_flag(encoder_id, model, "--encoder")
    from medlens.evaluation.retrieval_eval import evaluate_zero_shot
    from medlens.models.session import default_session
    from medlens.tasks.classify.zero_shot import load_label_set
    from medlens.tasks.retrieval.cases_csv import find_cases

    label_set = load_label_set(labels)
    cases = find_cases(source)
    encoder, record = default_session().encoder_for(settings_from(), encoder_id)
    res = evaluate_zero_shot(encoder, record, cases, label_set, n_boot=n_boot)
    if as_json:
        print_json(res)
        return
    typer.echo(f"{res['n_images']} images, label set {label_set.name}")
    for name, e in res["per_label"].items():
        if e.get("auc") is None:
            typer.echo(f"  {name:<28} n={e['n']:<4} AUC -   ({e.get('note', '')})")
        else:
            lo, hi = e["auc_ci95"]
            typer.echo(
                f"  {name:<28} n={e['n']:<4} pos={e['n_positive']:<4} "
                f"AUC {e['auc']:.3f} [{lo:.3f}, {hi:.3f}]"
            )
    macro = res["macro_auc"]
    typer.echo(
        f"macro AUC over {res['labels_with_auc']} labels: "
        f"{'-' if macro is None else f'{macro:.3f}'}"
    )
    for cid, why in res["failed"]:
        typer.echo(f"skipped {cid}: {why}", err=True)


def register(app: typer.Typer) -> None:
    app.command("classify")(classify_cmd)
    app.command("classify-eval")(classify_eval_cmd)

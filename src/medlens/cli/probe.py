"""`medlens probe train|show|evaluate`: small classifiers on stored library embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medlens.cli.common import (
    EncoderOpt,
    LegacyModelOpt,
    model_flag,
    print_json,
    settings_from,
)

probe_app = typer.Typer(
    help="Train and inspect probes (logistic regression on embeddings).", no_args_is_help=True
)


def _summary(probe: object) -> list[str]:
    m = probe.metrics  # type: ignore[attr-defined]
    lo, hi = m.get("auc_ci95") or (float("nan"), float("nan"))
    return [
        f"probe {probe.name} version {probe.version} label {probe.label!r}",  # type: ignore[attr-defined]
        f"  encoder {probe.encoder_id}",  # type: ignore[attr-defined]
        f"  cross-validated AUC {m.get('auc', float('nan')):.3f} (95 % CI {lo:.3f}-{hi:.3f}), "
        f"n={m.get('n')} positives={m.get('n_positive')} ({m.get('cv')})",
        f"  threshold {probe.threshold:.4f} ({probe.threshold_rule}): sensitivity "  # type: ignore[attr-defined]
        f"{m.get('sensitivity_at_threshold', float('nan')):.3f}, specificity "
        f"{(m.get('specificity_at_threshold') or float('nan')):.3f} (out-of-fold)",
    ]


def _stored_encoder(settings: object, library: str) -> str | None:
    """With no --encoder: the library's only embedding space when it does not hold the
    default encoder's vectors (probes need the stored vectors, not the model itself)."""
    from medlens.tasks.retrieval.library import CaseLibrary

    with CaseLibrary.open(settings, library) as lib:  # type: ignore[arg-type]
        stored = [e for e, _ in lib.db.encoders(library)]
        if len(stored) == 1 and stored[0] != lib.encoder_id:
            typer.echo(f"using the library's vectors from {stored[0]}", err=True)
            return stored[0]
    return None


def _more_patients_hint(lib: object, label: str) -> str:
    """Labels of this library that a patient-level split can train, for the error."""
    counts = lib.binary_label_patients()  # type: ignore[attr-defined]
    ok = sorted(k for k, (p, n) in counts.items() if min(p, n) >= 2 and k != label)
    if not ok:
        return " No 0/1 label of this library has both values in 2 or more patients."
    return f" Labels here with both values in 2 or more patients: {', '.join(ok)}."


@probe_app.command("train")
def train_cmd(
    label: Annotated[str, typer.Option("--label", help="0/1 case label, e.g. urgent.")],
    library: Annotated[str, typer.Option("--library", help="Case library name.")] = "default",
    encoder_id: EncoderOpt = None,
    name: Annotated[str | None, typer.Option(help="Probe name (default: the label).")] = None,
    folds: Annotated[int, typer.Option(min=2, max=20, help="Cross-validation folds.")] = 5,
    c: Annotated[float, typer.Option("--C", help="Inverse L2 regularisation strength.")] = 1.0,
    threshold: Annotated[str, typer.Option(help="youden or sensitivity:0.9")] = "youden",
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples for the AUC CI.")] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed (folds, bootstrap).")] = 0,
    out: Annotated[Path | None, typer.Option(help="Folder (default <data_dir>/probes).")] = None,
    model: LegacyModelOpt = None,
) -> None:
    """Train a probe on a library's stored embeddings and case labels (those `library
    search` shows); cross-validated by patient; writes a versioned probe file."""
    from medlens.errors import ConfigError
    from medlens.evaluation.probe_train import TooFewPatients, train_probe
    from medlens.tasks.classify.probes import save_probe
    from medlens.tasks.retrieval.library import CaseLibrary

    model = model_flag(encoder_id, model, "--encoder")
    settings = settings_from()
    model = model or _stored_encoder(settings, library)
    with CaseLibrary.open(settings, library, encoder_id=model) as lib:
        X, y, _, groups = lib.labelled_data(label)
        enc_id = lib.encoder_id
        try:
            probe = train_probe(
                X,
                y,
                name=name or label,
                label=label,
                encoder_id=enc_id,
                folds=folds,
                C=c,
                threshold_rule=threshold,
                n_boot=n_boot,
                seed=seed,
                training={"library": library, "label_source": "case library labels"},
                groups=groups,
            )
        except TooFewPatients as exc:
            raise ConfigError(
                f"Library {library!r}: {exc.reason}. Add {exc.need} "
                f"(`medlens library add DIR --library {library}`)."
                + _more_patients_hint(lib, label)
            ) from exc
    path = save_probe(probe, out or settings.data_path / "probes")
    for line in _summary(probe):
        typer.echo(line)
    typer.echo(f"saved {path}")
    typer.echo(
        f'use it: MEDLENS_PROBES=\'{{"{probe.name}": "{path}"}}\' '
        "or a [probes] table in config.toml"
    )


@probe_app.command("show")
def show_cmd(
    path: Annotated[Path, typer.Argument(help="Probe JSON file.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Print a probe's metadata and metrics (verifies its sha256)."""
    from medlens.tasks.classify.probes import load_probe

    probe = load_probe(path)
    if as_json:
        body = probe.to_dict()
        body.pop("weights")
        print_json({**body, "sha256": probe.sha256})
        return
    for line in _summary(probe):
        typer.echo(line)


@probe_app.command("evaluate")
def evaluate_cmd(
    path: Annotated[Path, typer.Argument(help="Probe JSON file.")],
    source: Annotated[Path, typer.Argument(help="Labelled CSV or a folder holding one.")],
    encoder_id: EncoderOpt = None,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples.")] = 1000,
    model: LegacyModelOpt = None,
) -> None:
    """AUC of a probe on labelled images (use data the probe was NOT trained on)."""
    model = model_flag(encoder_id, model, "--encoder")
    from medlens.errors import ConfigError
    from medlens.evaluation.retrieval_eval import evaluate_probe
    from medlens.models.session import default_session
    from medlens.tasks.classify.probes import load_probe
    from medlens.tasks.encoding import encoder_id
    from medlens.tasks.retrieval.cases_csv import find_cases

    probe = load_probe(path)
    # Default: the encoder the probe was trained on (its registry id).
    model = model or probe.encoder_id.split("@", 1)[0]
    encoder, record = default_session().encoder_for(settings_from(), model)
    if encoder_id(encoder) != probe.encoder_id:
        raise ConfigError(
            f"Probe was trained on {probe.encoder_id}, not {encoder_id(encoder)}; "
            "pass the matching --encoder."
        )
    print_json(evaluate_probe(probe, encoder, record, find_cases(source), n_boot=n_boot))


def register(app: typer.Typer) -> None:
    app.add_typer(probe_app, name="probe")

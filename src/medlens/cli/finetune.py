"""`medlens finetune medgemma|medsiglip|merge`: adapters, heads and probes (extra `train`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medlens.cli.common import print_json, settings_from

finetune_app = typer.Typer(
    help="Fine-tune MedGemma (LoRA/QLoRA) or MedSigLIP (probe, classifier, contrastive). "
    "Needs: pip install 'medlens[train]'.",
    no_args_is_help=True,
)

Opt = typer.Option


def _require_train() -> None:
    from medlens.errors import BackendUnavailable

    try:
        import peft  # noqa: F401
        import trl  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailable(
            f"Fine-tuning needs the train extra ({exc.name} missing): pip install 'medlens[train]'."
        ) from None


@finetune_app.command("medgemma")
def medgemma_cmd(
    data: Annotated[Path, Opt("--data", help="Training data file (or folder for text).")],
    base: Annotated[str, Opt("--base", help="Base registry id or checkpoint folder.")],
    output: Annotated[Path, Opt("--output", help="Output folder (adapter, logs, entry).")],
    fmt: Annotated[
        str, Opt("--format", help="pairs-csv | messages-jsonl | prompt-completion-jsonl | text")
    ] = "pairs-csv",
    image_column: Annotated[str, Opt(help="pairs-csv: image path column.")] = "image_file",
    text_column: Annotated[str, Opt(help="pairs-csv: answer text column.")] = "clinical_notes",
    prompt: Annotated[str | None, Opt(help="pairs-csv: the user prompt.")] = None,
    split_by: Annotated[
        str | None, Opt(help="Group column kept on one side of the split, e.g. patientid.")
    ] = None,
    eval_fraction: Annotated[float, Opt(help="Share of groups held out.")] = 0.0,
    method: Annotated[str, Opt(help="lora | qlora (4-bit NF4 base).")] = "lora",
    target: Annotated[str, Opt(help="language | all-linear (also the vision tower).")] = "language",
    rank: Annotated[int, Opt(help="LoRA rank.")] = 16,
    alpha: Annotated[int, Opt(help="LoRA alpha.")] = 16,
    dropout: Annotated[float, Opt(help="LoRA dropout.")] = 0.05,
    epochs: Annotated[float, Opt(help="Epochs (ignored when --steps is given).")] = 1.0,
    steps: Annotated[int | None, Opt(help="Optimizer steps.")] = None,
    lr: Annotated[float, Opt(help="Learning rate.")] = 2e-4,
    batch: Annotated[int, Opt(help="Examples per device batch.")] = 4,
    grad_accum: Annotated[int, Opt(help="Gradient accumulation steps.")] = 4,
    max_length: Annotated[int, Opt(help="Longest example in tokens (refused, never cut).")] = 1024,
    train_embeddings: Annotated[
        bool,
        Opt(
            help="Also train lm_head/embed_tokens (only when "
            "tokens were added; big, non-LoRA adapter)."
        ),
    ] = False,
    resume: Annotated[bool, Opt(help="Continue from the last checkpoint in --output.")] = False,
    device: Annotated[str, Opt(help="auto | cpu | cuda")] = "auto",
    adapter_id: Annotated[str | None, Opt("--id", help="Registry id of the adapter.")] = None,
) -> None:
    """LoRA/QLoRA SFT of a MedGemma base; writes an adapter and its registry entry."""
    _require_train()
    from medlens.training.medgemma import DataOptions, finetune_medgemma
    from medlens.training.sft import TrainOptions

    opts = TrainOptions(
        method=method,
        target=target,
        rank=rank,
        alpha=alpha,  # type: ignore[arg-type]
        dropout=dropout,
        epochs=epochs,
        steps=steps,
        lr=lr,
        batch=batch,
        grad_accum=grad_accum,
        max_length=max_length,
        train_embeddings=train_embeddings,
        device=device,
    )
    data_opts = DataOptions(data, fmt, image_column, text_column, prompt, split_by, eval_fraction)
    res = finetune_medgemma(
        base, data_opts, output, settings_from(), opts, resume=resume, adapter_id=adapter_id
    )
    out = res.to_dict()
    out.pop("entry")
    out["registry_entry"] = str(res.output / "registry_entry.toml")
    out["next"] = "Append registry_entry.toml to your MedLens config file to serve the adapter."
    print_json(out)


@finetune_app.command("medsiglip")
def medsiglip_cmd(
    data: Annotated[Path, Opt("--data", help="CSV with an image column and a label column.")],
    output: Annotated[Path, Opt("--output", help="Output folder.")],
    mode: Annotated[str, Opt(help="probe | classifier | contrastive")] = "probe",
    base: Annotated[
        str, Opt("--base", help="Encoder registry id or folder.")
    ] = "google/medsiglip-448",
    image_column: Annotated[str, Opt(help="Image path column.")] = "image_file",
    label_column: Annotated[str, Opt(help="Class names (';' separates several).")] = "finding",
    split_by: Annotated[str | None, Opt(help="Group column for probe cross-validation.")] = None,
    caption: Annotated[str, Opt(help="Contrastive caption template.")] = "{label}",
    steps: Annotated[int, Opt(help="Optimizer steps (classifier, contrastive).")] = 40,
    lr: Annotated[float | None, Opt(help="Learning rate (default per mode).")] = None,
    batch: Annotated[int, Opt(help="Batch size.")] = 8,
) -> None:
    """Probe (CPU, recommended first), classifier head or contrastive fine-tune."""
    from medlens.training.medsiglip import finetune_medsiglip, load_siglip_data

    siglip_data = load_siglip_data(data, image_column, label_column, split_by)
    res = finetune_medsiglip(
        mode,
        base,
        siglip_data,
        output,
        settings_from(),  # type: ignore[arg-type]
        steps=steps,
        lr=lr,
        batch=batch,
        caption_template=caption,
    )
    print_json(
        {
            "mode": res.mode,
            "output": str(res.output),
            "loss_before": res.loss_before,
            "loss_after": res.loss_after,
            "registry_entry": res.entry,
        }
    )


@finetune_app.command("merge")
def merge_cmd(
    adapter: Annotated[str, typer.Argument(help="Adapter registry id or adapter output folder.")],
    output: Annotated[Path, Opt("--output", help="Folder for the merged checkpoint.")],
) -> None:
    """Merge an adapter into its base (fp32): the fallback for llama.cpp and vLLM."""
    _require_train()
    import json

    from medlens.errors import ConfigError
    from medlens.models.adapters import base_record
    from medlens.models.loader import local_weights
    from medlens.models.registry import load_registry, record_from_dict
    from medlens.training.entries import merge_adapter

    settings = settings_from()
    folder = Path(adapter).expanduser()
    if (folder / "registry_entry.json").is_file():
        record = record_from_dict(json.loads((folder / "registry_entry.json").read_text()))
    else:
        record = load_registry(settings).get(adapter)
    if record.kind != "adapter":
        raise ConfigError(f"{record.id!r} is not an adapter.")
    base = base_record(record, settings)
    merged = merge_adapter(record.parsed_source.path, local_weights(base, settings), output)
    print_json({"merged": str(merged), "base": base.id, "adapter": record.id})


def register(app: typer.Typer) -> None:
    app.add_typer(finetune_app, name="finetune")

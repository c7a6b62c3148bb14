"""Resolve and load the backends a task needs (CLI and server share this).

`interpret` itself never loads models; callers use these helpers and pass the backends.
The loader (medlens.models.loader) builds missing test models on first use, so
`medlens interpret IMG --model medlens/test-medgemma` works on a fresh machine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medlens.errors import BackendUnavailable

if TYPE_CHECKING:
    from medlens.config import Settings
    from medlens.models.protocols import Encoder, Generator
    from medlens.models.registry import ModelRecord


def _loader() -> Any:
    try:
        from medlens.models import loader
    except ImportError as exc:
        raise BackendUnavailable(
            "No model backend is available (medlens.models.loader); install the extra "
            "with `pip install medlens[hf]`."
        ) from exc
    return loader


def resolve_record(
    settings: Settings, model: str | None, kind: str, *, text: bool = False
) -> ModelRecord:
    from medlens.models.registry import load_registry

    if model is None:
        model = (
            settings.encoder
            if kind == "encoder"
            else (settings.text_model if text else settings.generator)
        )
    return load_registry(settings).resolve(model, kind=kind)  # type: ignore[arg-type]


def load_generator_for(
    settings: Settings, model: str | None, *, text: bool = False
) -> tuple[Generator, ModelRecord]:
    """The generator named by `model` (default settings.generator / text_generator)."""
    record = resolve_record(settings, model, "generator", text=text)
    return _loader().load_generator(record, settings), record


def load_encoder_for(settings: Settings, model: str | None) -> tuple[Encoder, ModelRecord]:
    """The encoder named by `model` (default settings.encoder)."""
    record = resolve_record(settings, model, "encoder")
    return _loader().load_encoder(record, settings), record

"""Resolve and load the backends a task needs (CLI and server share this).

`interpret` itself never loads models; callers use these helpers and pass the backends.
Test models (`medlens/test-*`) are built on first use when missing, so
`medlens interpret IMG --model medlens/test-medgemma` works on a fresh machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from medlens.errors import BackendUnavailable

if TYPE_CHECKING:
    from medlens.config import Settings
    from medlens.models.protocols import Encoder, Generator
    from medlens.models.registry import ModelRecord


def ensure_test_model(settings: Settings, record: ModelRecord) -> None:
    """Build the tiny test models when a test record's folder does not exist yet."""
    if not record.is_test:
        return
    src = record.parsed_source
    if src.scheme != "path" or Path(src.location).exists():
        return
    from medlens.models.testmodels import ensure_test_models

    ensure_test_models(settings, realtext="realtext" in record.id)


def _loader() -> Any:
    try:
        from medlens.models import loader
    except ImportError as exc:
        raise BackendUnavailable(
            "No model backend is available (medlens.models.loader); install the extra "
            "with `pip install medlens[hf]`."
        ) from exc
    return loader


def resolve_generator_record(settings: Settings, model: str | None,
                             *, text: bool = False) -> ModelRecord:
    from medlens.models.registry import load_registry

    wanted = model or (settings.text_model if text else settings.generator)
    return load_registry(settings).resolve(wanted, kind="generator")


def load_generator_for(settings: Settings, model: str | None, *, text: bool = False
                       ) -> tuple[Generator, ModelRecord]:
    record = resolve_generator_record(settings, model, text=text)
    ensure_test_model(settings, record)
    load = _loader().load_generator
    try:
        gen = load(record, settings=settings)
    except TypeError:
        gen = load(record, settings)
    return gen, record


def load_encoder_for(settings: Settings, model: str | None) -> tuple[Encoder, ModelRecord]:
    from medlens.tasks.encoding import load_encoder_for as _load
    from medlens.tasks.encoding import resolve_encoder_record

    ensure_test_model(settings, resolve_encoder_record(settings, model))
    return _load(settings, model)

"""Load the generator an evaluation runs on (registry id or path), building test models
on demand so `medlens eval medqa --model medlens/gemma3-270m` works on a fresh machine."""

from __future__ import annotations

from typing import Any

from medlens.config import Settings
from medlens.errors import BackendUnavailable


def load_generator_for(settings: Settings, model: str) -> Any:
    """A Generator (maybe also a LoglikelihoodScorer) for `model`."""
    from medlens.models.registry import load_registry

    record = load_registry(settings).resolve(model, kind="generator")
    if record.is_test:
        from medlens.models.testmodels import ensure_test_models

        ensure_test_models(settings)
    try:
        from medlens.models import loader
    except ImportError as exc:  # the backend modules are optional (hf extra)
        raise BackendUnavailable(
            "No generator backend is available (medlens.models.loader); "
            "install it with `pip install 'medlens[hf]'`."
        ) from exc
    return loader.load_generator(model, settings=settings)

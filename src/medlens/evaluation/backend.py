"""Load the generator an evaluation runs on (registry id or path). The loader builds the
test models (e.g. `medlens/gemma3-270m`) on first use, so an eval works on a fresh machine."""

from __future__ import annotations

from typing import Any

from medlens.config import Settings
from medlens.errors import BackendUnavailable


def load_generator_for(settings: Settings, model: str) -> Any:
    """A Generator (maybe also a LoglikelihoodScorer) for `model`."""
    try:
        from medlens.models import loader
    except ImportError as exc:  # the backend modules are optional (hf extra)
        raise BackendUnavailable(
            "No generator backend is available (medlens.models.loader); "
            "install it with `pip install 'medlens[hf]'`."
        ) from exc
    return loader.load_generator(model, settings=settings)

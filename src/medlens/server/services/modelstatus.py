"""Are real weights configured? The page tells the user how to get them when not."""

from __future__ import annotations

from dataclasses import dataclass

from medlens.config import Settings
from medlens.models.registry import ModelKind
from medlens.models.session import configured_ids, default_session

HOW_TO_GET_WEIGHTS = (
    "MedGemma and MedSigLIP are gated: accept the Health AI Developer Foundations terms on "
    "each model's Hugging Face page, run `hf auth login`, then `medlens models pull "
    "google/medgemma-4b-it` and `medlens models pull google/medsiglip-448`, or point "
    "MedLens at a local copy (MEDLENS_GENERATOR=/path/to/model). Until then, "
    "`medlens serve --demo` runs tiny test models (output is meaningless)."
)


@dataclass(frozen=True)
class ModelStatus:
    ready: bool
    generator: str
    encoder: str
    message: str


def _available(settings: Settings, kind: ModelKind) -> bool:
    try:
        from medlens.models.hub import local_status

        return local_status(default_session().record(settings, None, kind)).available
    except Exception:  # any config problem means "not ready", said on the page
        return False


def model_status(settings: Settings) -> ModelStatus:
    gen, enc = configured_ids(settings)
    if settings.demo:
        return ModelStatus(True, gen, enc, "Demo mode: test models.")
    ready = _available(settings, "generator") and _available(settings, "encoder")
    return ModelStatus(ready, gen, enc, "" if ready else HOW_TO_GET_WEIGHTS)

"""Are real weights configured? The page tells the user how to get them when not."""

from __future__ import annotations

from dataclasses import dataclass

from medlens.config import Settings

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


def _available(model: str, settings: Settings) -> bool:
    try:
        from medlens.models.hub import local_status
        from medlens.models.loader import resolve_record

        kind = "encoder" if model == settings.encoder else "generator"
        return local_status(resolve_record(model, settings, kind)).available  # type: ignore[arg-type]
    except Exception:  # any config problem means "not ready", said on the page
        return False


def model_status(settings: Settings) -> ModelStatus:
    if settings.demo:
        from medlens.jobs.handlers import model_ids

        gen, enc = model_ids(settings)
        return ModelStatus(True, gen, enc, "Demo mode: test models.")
    ready = _available(settings.generator, settings) and _available(settings.encoder, settings)
    return ModelStatus(
        ready, settings.generator, settings.encoder, "" if ready else HOW_TO_GET_WEIGHTS
    )

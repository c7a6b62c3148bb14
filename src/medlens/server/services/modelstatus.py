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
        from medlens.models.registry import load_registry

        registry = load_registry(settings)
        source = registry.resolve(model).parsed_source if model in registry else None
        if source is None:
            from medlens.models.sources import parse_source

            source = parse_source(model)
    except Exception:
        return False
    if source.scheme in ("path", "gguf"):
        return source.path.exists()
    if source.scheme == "openai":
        return True  # a remote server: checked when first used
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(source.location, "config.json")
        return isinstance(found, str)
    except Exception:
        return False


def model_status(settings: Settings) -> ModelStatus:
    if settings.demo:
        return ModelStatus(True, "medlens/test-medgemma", "medlens/test-medsiglip",
                           "Demo mode: tiny test models.")
    ready = _available(settings.generator, settings) and _available(settings.encoder, settings)
    return ModelStatus(ready, settings.generator, settings.encoder,
                       "" if ready else HOW_TO_GET_WEIGHTS)

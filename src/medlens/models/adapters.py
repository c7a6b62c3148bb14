"""Serving LoRA adapters (registry kind "adapter") on their base model.

An adapter record names its base by registry id (options.adapter.base) and records the
base's weights hash; loading checks that hash, loads the base through its own backend
factory and merges the adapter into it (`merge_and_unload`), so the decode fast path sees
plain Gemma weights. Each adapter is its own entry in the model session: asking for
another adapter id loads that one ("switch"), `session.unload(id)` drops it.

Only the transformers backend applies adapters here. Every other combination raises
`SourceNotImplemented` naming the fallback (merge, then serve or convert the result).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from medlens.errors import ConfigError, SourceNotImplemented
from medlens.models.registry import ModelRecord, load_registry

_FALLBACK = {
    "gguf": (
        "llama.cpp cannot take this adapter from MedLens. Fallback: `medlens finetune merge "
        "{id} --output DIR`, then serve DIR with the transformers backend (source path:DIR) "
        "or convert DIR to GGUF with llama.cpp's convert_hf_to_gguf.py and run `medlens gate` "
        "on the converted model before serving it."
    ),
    "openai": (
        "MedLens does not attach adapters to a remote server. Fallback: start vLLM with "
        "`--enable-lora --lora-modules NAME={path}` (language-only adapters; this one "
        "adapts the vision tower: {vision}) and add an openai: record for NAME, or merge "
        "with `medlens finetune merge {id} --output DIR` and serve DIR."
    ),
}


def adapter_info(record: ModelRecord) -> dict[str, Any]:
    info = (record.options or {}).get("adapter") or {}
    if not info.get("base"):
        raise ConfigError(f"Adapter {record.id!r} has no options.adapter.base.")
    return dict(info)


def base_record(record: ModelRecord, settings: Any) -> ModelRecord:
    base = load_registry(settings).resolve(adapter_info(record)["base"], kind="generator")
    if base.kind == "adapter":
        raise ConfigError(f"Adapter {record.id!r}: its base {base.id!r} is itself an adapter.")
    return base


def check_backend(record: ModelRecord, base: ModelRecord) -> None:
    """Raise, naming the fallback, when the base's backend cannot apply the adapter."""
    scheme = base.parsed_source.scheme
    if scheme in ("hf", "path"):
        return
    template = _FALLBACK.get(
        scheme,
        "The {scheme} backend cannot apply adapters. Fallback: `medlens finetune "
        "merge {id} --output DIR` and serve DIR with the transformers backend.",
    )
    info = adapter_info(record)
    raise SourceNotImplemented(
        f"Adapter {record.id!r} on base {base.id!r} ({scheme}): "
        + template.format(
            id=record.id,
            path=record.parsed_source.path,
            scheme=scheme,
            vision=bool(info.get("vision_tower_adapted")),
        )
    )


def adapter_plan(record: ModelRecord, base_plan: Any) -> Any:
    """The base's load plan, re-keyed and re-labelled for the adapter."""
    key = (record.id, record.source, *base_plan.key[2:])
    return replace(base_plan, record=record, key=key)


def build_adapter(plan: Any, settings: Any, build_test_models: bool) -> Any:
    from medlens.models.hub import weights_hash
    from medlens.models.loader import _local_weights
    from medlens.models.local_info import is_test_model_dir

    record = plan.record
    base = base_record(record, settings)
    check_backend(record, base)
    base_path = _local_weights(base, settings, build_test_models)
    whash = weights_hash(base_path, Path(settings.data_dir).expanduser())
    expected = adapter_info(record).get("base_weights_hash")
    if expected and whash and expected != whash:
        raise ConfigError(
            f"Adapter {record.id!r} was trained on {base.id!r} weights {expected}, but the "
            f"local weights are {whash}; retrain it or restore those weights."
        )
    adapter_dir = record.parsed_source.path
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ConfigError(f"Adapter {record.id!r}: no adapter_config.json in {adapter_dir}.")
    is_test = record.is_test or base.is_test or is_test_model_dir(base_path)
    shown = replace(record, is_test=is_test)
    sha = adapter_info(record).get("adapter_sha256", "")
    return plan.factory(
        shown,
        base_path,
        device=plan.device,
        dtype=plan.dtype,
        weights_hash=f"{whash}+lora:{sha[:16]}" if sha else whash,
        adapter=adapter_dir,
    )


def merge_into(model: Any, adapter_dir: Path) -> Any:
    """Apply and merge a peft adapter into a loaded transformers model."""
    try:
        from peft import PeftModel
    except ImportError as exc:
        raise SourceNotImplemented(
            "Serving an adapter needs peft: pip install 'medlens[train]'."
        ) from exc
    return PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()

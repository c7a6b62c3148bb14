"""Registry entries for what `medlens finetune` produces, and merging an adapter.

An adapter entry (kind "adapter") names its base by registry id, revision and weights hash
itself: peft's `adapter_config.json` records `base_model_name_or_path` as given, often a
local path (pitfall 11). It also carries target modules, rank, whether embeddings were
trained, the data manifest and the licences the adapter inherits from its data.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from medlens.training.data import DataManifest, sha256_file
from medlens.training.sft import LANGUAGE_TARGET, TrainOptions


def adapter_entry(
    adapter_id: str,
    base: Any,
    adapter_dir: Path,
    opts: TrainOptions,
    manifest: DataManifest,
    *,
    base_weights_hash: str,
    trainable: int,
) -> dict[str, Any]:
    weights = adapter_dir / "adapter_model.safetensors"
    entry: dict[str, Any] = {
        "id": adapter_id,
        "kind": "adapter",
        "source": f"path:{adapter_dir.resolve()}",
        "revision": "local",
        "modalities": list(base.modalities),
        "prompt_format": base.prompt_format,
        "dtype": base.dtype,
        "context_length": base.context_length,
        "is_test": base.is_test,
        "description": f"{opts.method.upper()} adapter (rank {opts.rank}) on {base.id}.",
        "options": {
            "adapter": {
                "base": base.id,
                "base_source": base.source,
                "base_revision": base.revision,
                "base_weights_hash": base_weights_hash,
                "adapter_sha256": sha256_file(weights) if weights.is_file() else "",
                "method": opts.method,
                # MedLens serves adapters merged into the unquantised base: a QLoRA adapter
                # then runs on other weights than it trained on (pitfall 8) - gate it.
                "trained_on_base_quantization": "nf4" if opts.method == "qlora" else "none",
                "target": opts.target,
                "target_modules": LANGUAGE_TARGET if opts.target == "language" else "all-linear",
                "vision_tower_adapted": opts.target != "language",
                "rank": opts.rank,
                "alpha": opts.alpha,
                "embeddings_trained": opts.train_embeddings,
                "trainable_parameters": trainable,
                "manifest": str((adapter_dir.parent / "data_manifest.json").resolve()),
                "data_sha256": manifest.data_sha256,
                "licences": manifest.licences,
                "gate_report": "",  # filled in by `medlens gate`
            }
        },
    }
    if base.preprocess is not None:
        entry["preprocess"] = asdict(base.preprocess)
        entry["preprocess"]["mean"] = list(base.preprocess.mean)
        entry["preprocess"]["std"] = list(base.preprocess.std)
    return entry


def write_entry(entry: dict[str, Any], output: Path) -> None:
    """`registry_entry.json` and the same as a `[[models]]` table for the config file."""
    (output / "registry_entry.json").write_text(json.dumps(entry, indent=2), "utf-8")
    (output / "registry_entry.toml").write_text(to_toml(entry), "utf-8")


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_value(x)}" for k, x in v.items()) + " }"
    return json.dumps(str(v))  # a TOML basic string is a JSON string


def to_toml(entry: dict[str, Any]) -> str:
    """One `[[models]]` table (nested tables inline, which TOML reads back the same)."""
    lines = ["[[models]]"]
    lines += [f"{k} = {_value(v)}" for k, v in entry.items()]
    return "\n".join(lines) + "\n"


def merge_adapter(adapter_dir: Path, base_path: Path, output: Path) -> Path:
    """Merge a LoRA adapter into its base (fp32) and save a plain checkpoint + processor.

    The fallback for backends that cannot apply adapters (llama.cpp, older vLLM): serve or
    convert the merged checkpoint; with trained embeddings merging unties them (pitfall 4).
    """
    import torch
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

    vlm = hasattr(AutoConfig.from_pretrained(base_path), "vision_config")
    cls = AutoModelForImageTextToText if vlm else AutoModelForCausalLM
    model = cls.from_pretrained(base_path, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    output.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(output))
    _copy_processor(adapter_dir, base_path, output, vlm)
    marker = base_path / "medlens_test_model.json"
    if marker.is_file():  # a test model merged is still a test model
        (output / marker.name).write_text(marker.read_text("utf-8"), "utf-8")
    return output


def _copy_processor(adapter_dir: Path, base_path: Path, output: Path, vlm: bool) -> None:
    from transformers import AutoProcessor, AutoTokenizer

    src = adapter_dir if (adapter_dir / "tokenizer_config.json").is_file() else base_path
    (AutoProcessor if vlm else AutoTokenizer).from_pretrained(src).save_pretrained(str(output))

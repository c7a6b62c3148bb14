"""Facts read from a local checkpoint folder (no torch): preprocessing, test-model marker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medlens.models.sources import Source

TEST_MODEL_MARKER = "medlens_test_model.json"


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}


def is_test_model_dir(path: Path) -> bool:
    return (path / TEST_MODEL_MARKER).is_file()


def guess_record_fields(source: Source, kind: str) -> dict[str, Any]:
    """Record fields for an ad-hoc model: size from its image processor config."""
    from medlens.models.registry import PreprocessSpec

    fields: dict[str, Any] = {"revision": "local" if source.scheme == "path" else "main"}
    if source.scheme != "path":
        return fields
    root = source.path
    marker = read_json(root / TEST_MODEL_MARKER)
    if marker:
        fields["is_test"] = True
        fields["dtype"] = "float32"
        fields["description"] = marker.get("description", "MedLens test model")
    config = read_json(root / "config.json")
    model_type = config.get("model_type", "")
    proc = read_json(root / "preprocessor_config.json") or read_json(root / "processor_config.json")
    size_field = proc.get("size") or proc.get("image_processor", {}).get("size") or {}
    size = size_field.get("height") if isinstance(size_field, dict) else None
    if model_type == "siglip" or kind == "encoder":
        fields["modalities"] = ("text", "image")
        fields["prompt_format"] = "siglip"
        if size:
            fields["preprocess"] = PreprocessSpec(size=int(size), pad_value="zero", antialias=False)
    elif "vision_config" in config:
        fields["modalities"] = ("text", "image")
        if size:
            fields["preprocess"] = PreprocessSpec(size=int(size))
    else:
        fields["modalities"] = ("text",)
        # A base (not instruction-tuned) Gemma test model has no medical prompt format.
        base = marker.get("name") == "gemma3-270m"
        fields["prompt_format"] = "gemma-text" if base else "medgemma-text"
    return fields

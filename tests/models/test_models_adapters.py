"""Adapter registry records (kind "adapter") and the fallback message per backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from medlens.config import load_settings
from medlens.errors import ConfigError, SourceNotImplemented
from medlens.models import loader
from medlens.models.registry import load_registry, record_from_dict, serves_as


def _adapter(base: str, tmp_path: Path, **info: object) -> dict:
    return {
        "id": "test/adapter",
        "kind": "adapter",
        "source": f"path:{tmp_path}",
        "revision": "local",
        "options": {"adapter": {"base": base, **info}},
    }


def test_adapter_record_needs_its_base(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"options\.adapter\.base"):
        record_from_dict({"id": "a", "kind": "adapter", "source": f"path:{tmp_path}"})
    rec = record_from_dict(_adapter("medlens/test-medgemma", tmp_path))
    assert serves_as(rec, "generator") and not serves_as(rec, "encoder")


def test_registry_resolves_an_adapter_as_a_generator(tmp_path: Path) -> None:
    settings = load_settings(models=[_adapter("medlens/test-medgemma", tmp_path)])
    rec = load_registry(settings).resolve("test/adapter", kind="generator")
    assert rec.kind == "adapter"
    plan = loader.plan_load(rec, settings, "generator")
    assert plan.key[0] == "test/adapter" and plan.device == "cpu"


@pytest.mark.parametrize(
    ("source", "fallback"),
    [
        ("gguf:/nowhere/model.gguf", "convert_hf_to_gguf"),
        ("openai:http://127.0.0.1:9/v1?model=x", "--enable-lora"),
    ],
)
def test_unsupported_backends_say_so_and_name_the_fallback(
    tmp_path: Path, source: str, fallback: str
) -> None:
    base = {"id": "test/base", "kind": "generator", "source": source}
    settings = load_settings(models=[base, _adapter("test/base", tmp_path)])
    with pytest.raises(SourceNotImplemented) as err:
        loader.plan_load("test/adapter", settings, "generator")
    assert fallback in str(err.value) and "medlens finetune merge" in str(err.value)


def test_an_adapter_on_other_base_weights_is_refused(tmp_path, tiny_test_models) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "adapter_config.json").write_text("{}")
    settings = load_settings(
        models=[_adapter("medlens/test-medgemma", tmp_path, base_weights_hash="sha256:" + "0" * 64)]
    )
    plan = loader.plan_load("test/adapter", settings, "generator")
    with pytest.raises(ConfigError, match="was trained on"):
        loader.build(plan, settings)

"""Registry records as data, user config overrides, resolution of ids and paths."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from medlens.config import load_settings
from medlens.errors import ConfigError, UnknownModel
from medlens.models.registry import load_registry, record_from_dict
from medlens.models.testmodels import IMAGE_SIZE

REAL_IDS = [
    "google/medgemma-4b-it",
    "google/medgemma-1.5-4b-it",
    "google/medgemma-27b-it",
    "google/medgemma-27b-text-it",
    "google/medsiglip-448",
]


def test_builtin_records_hold_the_model_card_facts() -> None:
    reg = load_registry(load_settings())
    for model_id in REAL_IDS:
        rec = reg.get(model_id)
        assert rec.gated and not rec.is_test
        assert rec.parsed_source.scheme == "hf" and rec.parsed_source.location == model_id
    assert reg.get("google/medgemma-4b-it").preprocess.size == 896
    assert reg.get("google/medgemma-27b-text-it").modalities == ("text",)
    assert reg.get("google/medgemma-27b-text-it").preprocess is None
    siglip = reg.get("google/medsiglip-448")
    assert siglip.kind == "encoder"
    assert siglip.preprocess.size == 448 and siglip.preprocess.pad_value == "zero"
    assert not siglip.preprocess.antialias
    assert all(r.dtype != "float16" for r in reg)


def test_test_records_match_what_testmodels_builds() -> None:
    settings = load_settings()
    reg = load_registry(settings)
    for model_id, folder in [
        ("medlens/test-medgemma", "medgemma-tiny"),
        ("medlens/test-medgemma-realtext", "medgemma-realtext"),
        ("medlens/test-medsiglip", "medsiglip-tiny"),
        ("medlens/gemma3-270m", "gemma3-270m"),
    ]:
        rec = reg.get(model_id)
        assert rec.is_test
        assert rec.parsed_source.path == settings.test_models_dir / folder
        if rec.accepts_images:
            assert rec.preprocess.size == IMAGE_SIZE
    assert reg.get("medlens/gemma3-270m").modalities == ("text",)


def test_config_file_overrides_and_adds_models(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "medlens.toml"
    cfg.write_text(textwrap.dedent("""
        [[models]]
        id = "google/medgemma-4b-it"
        revision = "abc123"
        [models.preprocess]
        size = 448

        [[models]]
        id = "site/my-medgemma"
        kind = "generator"
        source = "path:/opt/models/my-medgemma"
        modalities = ["text", "image"]
        description = "Fine-tuned in house"
    """))
    monkeypatch.setenv("MEDLENS_CONFIG", str(cfg))
    reg = load_registry(load_settings())
    base = reg.get("google/medgemma-4b-it")
    assert base.revision == "abc123"
    assert base.preprocess.size == 448
    assert base.preprocess.pad_value == "background"  # untouched fields kept
    assert base.gated  # merged, not replaced
    mine = reg.get("site/my-medgemma")
    assert mine.parsed_source.path == Path("/opt/models/my-medgemma")
    assert mine.accepts_images


def test_config_file_typo_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "medlens.toml"
    cfg.write_text('[[models]]\nid = "x/y"\nkind = "generator"\nsource = "hf:x/y"\nrevison = "1"\n')
    monkeypatch.setenv("MEDLENS_CONFIG", str(cfg))
    with pytest.raises(ConfigError, match="revison"):
        load_registry(load_settings())


def test_unknown_ids_and_kinds() -> None:
    reg = load_registry(load_settings())
    with pytest.raises(UnknownModel, match="Known ids"):
        reg.resolve("google/medgemma-9b-it")
    with pytest.raises(UnknownModel, match="--model PATH"):
        reg.resolve("not-a-model")
    with pytest.raises(UnknownModel, match="encoder"):
        reg.resolve("google/medsiglip-448", kind="generator")
    with pytest.raises(ConfigError):
        record_from_dict({"id": "a/b", "kind": "decoder", "source": "hf:a/b"})


def test_a_path_becomes_an_adhoc_record(tiny_test_models: dict[str, Path]) -> None:
    reg = load_registry(load_settings())
    rec = reg.resolve(str(tiny_test_models["medgemma-tiny"]))
    assert rec.kind == "generator" and rec.is_test and rec.accepts_images
    assert rec.preprocess.size == IMAGE_SIZE
    enc = reg.resolve(str(tiny_test_models["medsiglip-tiny"]), kind="encoder")
    assert enc.kind == "encoder" and enc.preprocess.pad_value == "zero"

"""The three deployment recipes' example configs load, validate and resolve."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from medlens.config import Settings
from medlens.models.registry import load_registry
from medlens.models.sources import parse_source

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "examples" / "deploy"
RECIPES = {
    # file -> (schemes the file's own records must use, database scheme)
    "laptop.toml": ({"gguf", "openai"}, "sqlite"),
    "single-gpu.toml": ({"openai"}, "sqlite"),
    "cluster.toml": ({"openai"}, "postgresql"),
}


@pytest.fixture(params=sorted(RECIPES))
def recipe(request, monkeypatch) -> tuple[str, Settings, dict]:
    path = DEPLOY / request.param
    for var in ("MEDLENS_GENERATOR", "MEDLENS_ENCODER", "MEDLENS_TEXT_GENERATOR",
                "MEDLENS_DATABASE_URL", "MEDLENS_DEVICE", "MEDLENS_DTYPE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MEDLENS_CONFIG", str(path))
    return request.param, Settings(), tomllib.loads(path.read_text("utf-8"))


def test_every_key_is_a_setting(recipe):
    # Settings ignores unknown keys (extra="ignore"), so a typo would pass silently.
    _, _, raw = recipe
    unknown = set(raw) - set(Settings.model_fields)
    assert not unknown, f"not MedLens settings: {sorted(unknown)}"


def test_models_resolve_with_expected_backends(recipe):
    name, settings, raw = recipe
    schemes, db = RECIPES[name]
    registry = load_registry(settings)
    own = [registry.get(entry["id"]) for entry in raw["models"]]
    assert {r.parsed_source.scheme for r in own} == schemes
    for rec in own:
        parse_source(rec.source)
        if rec.accepts_images:
            assert rec.preprocess is not None and rec.preprocess.size == 896, rec.id
        for key in ("timeout_s", "max_retries", "n_ctx", "n_threads"):
            if key in rec.options:
                assert float(rec.options[key]) > 0
    gen = registry.resolve(settings.generator, kind="generator")
    assert registry.resolve(settings.text_model, kind="generator")
    assert registry.resolve(settings.encoder, kind="encoder").id == "google/medsiglip-448"
    assert gen.accepts_images  # the X-ray interpreter needs a vision generator
    assert settings.resolved_database_url.startswith(db)
    assert settings.dtype != "float16"


def test_openai_sources_name_a_model(recipe):
    _, _, raw = recipe
    for entry in raw["models"]:
        src = parse_source(entry["source"])
        if src.scheme == "openai":
            assert src.options.get("model"), entry["id"]
            assert src.location.endswith("/v1"), entry["id"]


def test_laptop_gguf_carries_an_mmproj():
    raw = tomllib.loads((DEPLOY / "laptop.toml").read_text("utf-8"))
    gguf = [parse_source(m["source"]) for m in raw["models"] if m["source"].startswith("gguf:")]
    assert gguf and all(s.options.get("mmproj", "").endswith(".gguf") for s in gguf)


def test_deployment_doc_covers_each_recipe():
    doc = (REPO / "docs" / "deployment.md").read_text("utf-8")
    for name in RECIPES:
        assert f"examples/deploy/{name}" in doc
    for must in ("139 KB", "mmproj", "tensor-parallel-size", "medlens worker", "PostgreSQL"):
        assert must in doc

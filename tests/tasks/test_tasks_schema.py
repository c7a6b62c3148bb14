"""The committed JSON Schema equals the one generated from the models; docs list fields."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from medlens.tasks.interpretation import Interpretation, schema_text

DOCS = Path(__file__).resolve().parents[2] / "docs" / "interpretation-schema.md"


def test_committed_schema_is_current() -> None:
    committed = resources.files("medlens.tasks").joinpath("interpretation.schema.json")
    assert committed.read_text("utf-8") == schema_text(), (
        "regenerate: python -m medlens.tasks.interpretation > "
        "src/medlens/tasks/interpretation.schema.json")


def test_docs_mention_every_top_level_field() -> None:
    text = DOCS.read_text("utf-8")
    for name in Interpretation.model_fields:
        assert f"`{name}`" in text, name

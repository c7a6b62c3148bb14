"""The committed JSON Schema equals the one generated from the models; docs list fields."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from medlens.tasks.interpret.result import Interpretation, schema_text

DOCS = Path(__file__).resolve().parents[2] / "docs" / "interpretation-schema.md"


def test_committed_schema_is_current() -> None:
    committed = resources.files("medlens.tasks.interpret").joinpath("result.schema.json")
    assert committed.read_text("utf-8") == schema_text(), (
        "regenerate: python -m medlens.tasks.interpret.result > "
        "src/medlens/tasks/interpret/result.schema.json")


def test_docs_mention_every_top_level_field() -> None:
    text = DOCS.read_text("utf-8")
    for name in Interpretation.model_fields:
        assert f"`{name}`" in text, name


def test_outputs_validate_against_the_committed_schema(cxr_pngs: list[Path],
                                                       dicom_dir: Path) -> None:
    """Independent check with a JSON Schema validator (what a consumer would use)."""
    import json

    import jsonschema

    from medlens.imaging.ingest import ingest
    from medlens.models.registry import PreprocessSpec
    from medlens.tasks.interpret.pipeline import InterpretOptions, interpret
    from medlens.tasks.interpret.study import Study

    from .conftest import ABNORMAL_REPORT, FakeEncoder, MockGenerator

    schema = json.loads(resources.files("medlens.tasks.interpret").joinpath(
        "result.schema.json").read_text("utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    opts = InterpretOptions(generator_preprocess=PreprocessSpec(64),
                            encoder_preprocess=PreprocessSpec(48))
    complete = interpret(Study.from_ingested([ingest(cxr_pngs[0])]), opts,
                         generator=MockGenerator([ABNORMAL_REPORT]), encoder=FakeEncoder())
    refused = interpret(Study.from_ingested([ingest(dicom_dir / "CT_small.dcm")]), opts,
                        generator=MockGenerator())
    for r in (complete, refused):
        validator.validate(json.loads(r.to_json()))
    bad = json.loads(complete.to_json())
    bad["urgency"]["level"] = "whenever"
    assert not validator.is_valid(bad)

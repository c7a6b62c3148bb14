"""Output language and the back-translation check."""

from __future__ import annotations

from pathlib import Path

import pytest

from medlens.errors import ConfigError
from medlens.imaging.ingest import ingest
from medlens.models.registry import PreprocessSpec
from medlens.tasks.interpret.language import LANGUAGES, language_instruction, normalise_language
from medlens.tasks.interpret.pipeline import InterpretOptions, interpret
from medlens.tasks.interpret.study import Study

from .conftest import ABNORMAL_REPORT, FakeEncoder, MockGenerator

SPANISH = ("Technique: Radiografía de tórax PA.\nFindings: Gran derrame pleural derecho. "
           "Sin neumotórax.\nImpression: Gran derrame pleural derecho.")


@pytest.mark.parametrize("code", ["es", "fr", "de", "pt", "zh", "hi"])
def test_required_languages_are_supported(code: str) -> None:
    assert normalise_language(code.upper()) == code
    line = language_instruction(code)
    assert LANGUAGES[code] in line and "'Findings:'" in line


def test_unknown_language_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="Unsupported language 'xx'"):
        normalise_language("xx")
    assert normalise_language("es-MX") == "es" and language_instruction("en") == ""


def test_spanish_report_with_back_translation(cxr_pngs: list[Path]) -> None:
    gen = MockGenerator([SPANISH, ABNORMAL_REPORT])  # report, then its back-translation
    opts = InterpretOptions(generator_preprocess=PreprocessSpec(64), language="es",
                            back_translate=True, encoder_preprocess=PreprocessSpec(48))
    r = interpret(Study.from_ingested([ingest(cxr_pngs[0])]), opts, generator=gen,
                  encoder=FakeEncoder())
    assert r.language == "es"
    assert "Write the whole report in Spanish" in gen.calls[0][-1].content[0].text
    assert r.report.findings.startswith("Gran derrame pleural derecho")
    assert r.report.parse_quality == "structured"
    # the second call asked for an English translation of the Spanish report (as data)
    bt_prompt = gen.calls[1][-1].content[0].text
    assert "Translate the radiology report" in bt_prompt and "Gran derrame" in bt_prompt
    lc = r.language_check
    assert lc is not None and lc.back_translation == ABNORMAL_REPORT
    assert {a.label for a in lc.assertions} >= {"Pleural Effusion", "Pneumothorax"}
    scores = r.scores_for(0)
    for m in lc.mismatches:
        label = m.split(":")[0]
        assert label in scores
    # the cross-check and urgency read the back-translation
    assert r.cross_check.checked and r.cross_check.source_text == "back_translation"
    assert r.urgency.level == "urgent"


def test_spanish_without_back_translation_is_not_cross_checked(cxr_pngs: list[Path]) -> None:
    opts = InterpretOptions(generator_preprocess=PreprocessSpec(64), language="es",
                            back_translate=False)
    gen = MockGenerator([SPANISH])
    r = interpret(Study.from_ingested([ingest(cxr_pngs[0])]), opts, generator=gen)
    assert len(gen.calls) == 1 and r.language_check is None
    assert not r.cross_check.checked and "es" in r.cross_check.note
    # urgency still reads the Spanish report (keyword rules): "Gran derrame pleural"
    assert r.urgency.level == "urgent" and [x.rule_id for x in r.urgency.reasons] == ["U03"]


def test_back_translation_is_on_by_default_as_in_the_cli() -> None:
    """One language behaviour everywhere: the options' default is the CLI's default, so a
    server job (jobs.handlers builds InterpretOptions without naming it) checks too."""
    import inspect

    from medlens.cli.interpret import interpret_cmd

    cli_default = inspect.signature(interpret_cmd).parameters["back_translate"].default
    assert InterpretOptions().back_translate is True and cli_default is True


def test_headings_in_spanish_are_parsed() -> None:
    from medlens.tasks.interpret.report_parser import parse_report

    r = parse_report("Hallazgos: Pulmones claros.\nImpresión: Normal.")
    assert r.findings == "Pulmones claros." and r.impression == "Normal."

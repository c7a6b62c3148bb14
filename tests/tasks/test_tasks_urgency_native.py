"""Urgency on non-English reports (tasks.interpret.urgency_native): keyword rules for
fr/es/de/pt/it when there is no English back-translation, the same rule ids as English."""

from __future__ import annotations

from pathlib import Path

import pytest

from medlens.imaging.ingest import ingest
from medlens.models.registry import PreprocessSpec
from medlens.tasks.interpret.pipeline import InterpretOptions, interpret
from medlens.tasks.interpret.study import Study
from medlens.tasks.interpret.urgency import study_urgency
from medlens.tasks.interpret.urgency_native import LEXICONS, read_native

from .conftest import FakeEncoder, MockGenerator

FRENCH = ("Technique: Radiographie thoracique de face.\nFindings: Pneumothorax apical gauche "
          "de faible abondance. Pas d'épanchement pleural.\nImpression: Pneumothorax apical "
          "gauche.")

CASES = [
    ("fr", "Pneumothorax apical gauche.", "urgent", ["U01"]),
    ("fr", "Pas de pneumothorax. Pas d'épanchement pleural.", "routine", []),
    ("fr", "Un pneumothorax ne peut être exclu.", "priority", ["U02"]),
    ("fr", "Épanchement pleural droit abondant.", "urgent", ["U03"]),
    ("fr", "Pneumothorax sous tension à gauche.", "urgent", ["T01", "U01"]),
    ("es", "Sin neumotórax, gran derrame pleural derecho.", "urgent", ["U03"]),
    ("es", "Derrame pleural izquierdo moderado.", "priority", ["U04"]),
    ("es", "No se descarta neumotórax.", "priority", ["U02"]),
    ("de", "Kein Pneumothorax. Kleiner Pleuraerguss rechts.", "routine", []),
    ("de", "Freie Luft unter dem rechten Zwerchfell.", "urgent", ["U05"]),
    ("de", "Spannungspneumothorax rechts.", "urgent", ["T01", "U01"]),
    ("pt", "Pneumotórax à direita.", "urgent", ["U01"]),
    ("pt", "Sem pneumotórax ou derrame pleural.", "routine", []),
    ("it", "Pneumotorace apicale sinistro.", "urgent", ["U01"]),
    ("it", "Non pneumotorace. Versamento pleurico abbondante.", "urgent", ["U03"]),
]


@pytest.mark.parametrize(("lang", "text", "level", "rules"), CASES)
def test_keyword_rules(lang: str, text: str, level: str, rules: list[str]) -> None:
    warnings: list[str] = []
    u = study_urgency(None, None, {}, "", {}, warnings, report=(lang, text))
    assert u.level == level, u.reasons
    assert sorted(r.rule_id for r in u.reasons) == rules
    assert all(r.evidence and r.evidence in text for r in u.reasons)
    assert len(warnings) == 1 and f"({lang})" in warnings[0] and "keyword" in warnings[0]


def test_required_languages_and_fallback() -> None:
    assert set(LEXICONS) >= {"fr", "es", "de", "pt", "it"}
    assert read_native("zh", "气胸") is None
    warnings: list[str] = []
    u = study_urgency(None, None, {}, "", {}, warnings, report=("zh", "左侧气胸。"))
    assert u.level == "routine" and warnings == [
        "Urgency rules read English text only; only scores were used."]
    # an English text (report or back-translation) is what the rules read when present
    warnings.clear()
    study_urgency(None, None, {}, "No pneumothorax.", {}, warnings, report=("fr", FRENCH))
    assert warnings == []


def _french_study(cxr_pngs: list[Path]) -> Study:
    return Study.from_ingested([ingest(cxr_pngs[0])])


def test_french_report_without_back_translation_is_flagged_by_rules(
    cxr_pngs: list[Path],
) -> None:
    opts = InterpretOptions(generator_preprocess=PreprocessSpec(64), language="fr",
                            back_translate=False, encoder_preprocess=PreprocessSpec(48))
    r = interpret(_french_study(cxr_pngs), opts, generator=MockGenerator([FRENCH]),
                  encoder=FakeEncoder())
    assert r.urgency.level == "urgent"
    assert [x.rule_id for x in r.urgency.reasons if x.rule_id.startswith("U")] == ["U01"]
    assert not any("only scores were used" in w for w in r.warnings)


def test_french_report_with_empty_back_translation_still_read(cxr_pngs: list[Path]) -> None:
    opts = InterpretOptions(generator_preprocess=PreprocessSpec(64), language="fr",
                            encoder_preprocess=PreprocessSpec(48))  # back-translation: default
    gen = MockGenerator([FRENCH, ""])  # the report, then an empty back-translation
    r = interpret(_french_study(cxr_pngs), opts, generator=gen, encoder=FakeEncoder())
    assert len(gen.calls) == 2 and r.language_check is not None
    assert "U01" in [x.rule_id for x in r.urgency.reasons]

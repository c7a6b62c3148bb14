"""FHIR bundles → patient context within a token budget; one pinned by a golden file."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pytest

from medlens.errors import DataError
from medlens.tasks.ehr.fhir_facts import bundle_facts, load_bundle
from medlens.tasks.ehr.patient_context import age_band, approx_tokens, patient_context, relative

GOLDEN = Path(__file__).parent / "golden" / "ehr_michele_wolf_400.txt"


@pytest.fixture(scope="module")
def bundles(shared_data: Path) -> list[Path]:
    files = sorted((shared_data / "fhir").glob("*.json"))
    assert len(files) == 10
    return files


def _identifiers(bundle: dict) -> list[str]:
    """Strings that must never reach the context: names, ids, addresses, phone, birth."""
    out = []
    for entry in bundle["entry"]:
        res = entry["resource"]
        if res["resourceType"] != "Patient":
            continue
        for name in res.get("name", []):
            out += [name.get("family", ""), *name.get("given", [])]
        out += [i.get("value", "") for i in res.get("identifier", [])]
        for addr in res.get("address", []):
            out += [*addr.get("line", []), addr.get("city", ""), addr.get("postalCode", "")]
        out += [t.get("value", "") for t in res.get("telecom", [])]
        out += [res.get("birthDate", ""), res["id"]]
    return [s for s in out if s and len(s) > 2]


@pytest.mark.parametrize("budget", [400, 150])
def test_all_bundles_fit_their_budget_without_identifiers(bundles: list[Path],
                                                          budget: int) -> None:
    for path in bundles:
        ctx = patient_context(path, budget_tokens=budget)
        assert ctx.tokens == approx_tokens(ctx.text) <= budget, path.name
        assert ctx.text.startswith("Patient: age ")
        assert ctx.sex in ("male", "female")
        raw = json.loads(path.read_text())
        for ident in _identifiers(raw):
            assert ident not in ctx.text, f"{path.name}: identifier {ident!r} leaked"
        assert not re.search(r"\b(19|20)\d\d-\d\d-\d\d\b", ctx.text), "absolute date leaked"


def test_tight_budget_with_a_real_counter(bundles: list[Path]) -> None:
    count = lambda t: len(t)  # noqa: E731 - a counter that is much stricter than words
    for path in bundles:
        ctx = patient_context(path, budget_tokens=300, count_tokens=count)
        assert len(ctx.text) <= 300


def test_golden_context(bundles: list[Path]) -> None:
    path = next(p for p in bundles if p.name.startswith("Michele_Wolf"))
    ctx = patient_context(path, budget_tokens=400)
    assert ctx.text + "\n" == GOLDEN.read_text("utf-8")
    # hand-checked facts: born 1941-09-14, latest record 2016-04-03 → 74 y; CHF since
    # 2015-09-15 (≈ 6.6 months); furosemide ordered on 2016-04-03; creatinine 0.54 mg/dL.
    assert ctx.age_band == "70-79"
    assert "Chronic congestive heart failure (since 6 mo before study)" in ctx.text
    assert "Creatinine: 0.54 mg/dL (on study day)" in ctx.text


def test_facts_after_the_study_are_left_out(bundles: list[Path]) -> None:
    path = next(p for p in bundles if p.name.startswith("Michele_Wolf"))
    ctx = patient_context(path, study_date=date(2015, 1, 1), budget_tokens=2000)
    assert "heart failure" not in ctx.text and "Furosemide" not in ctx.text
    assert ctx.age_band == "70-79"


def test_allergies_and_medications(bundles: list[Path]) -> None:
    path = next(p for p in bundles if p.name.startswith("Kermit_Trantow"))
    ctx = patient_context(path, budget_tokens=400)
    assert "Allergy to peanuts" in ctx.sections["Allergies"][2]
    assert any("Hydrochlorothiazide" in m for m in ctx.sections["Active medications"])
    facts = bundle_facts(load_bundle(path))
    assert {f.kind for f in facts.facts} >= {"condition", "medication", "allergy", "lab", "vital"}


def test_age_bands_and_relative_dates() -> None:
    assert age_band(date(1930, 1, 1), date(2025, 1, 1)) == "90+"
    assert age_band(date(2015, 6, 1), date(2025, 1, 1)) == "under 18"
    assert age_band(date(1960, 6, 2), date(2025, 6, 1)) == "60-69"
    assert relative(date(2025, 1, 1), date(2025, 1, 4)) == "3 d before study"
    assert relative(date(2024, 1, 1), date(2025, 1, 1)) == "12 mo before study"
    assert relative(None, date(2025, 1, 1)) == "date unknown"


def test_bad_files_are_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="not a JSON FHIR bundle"):
        patient_context(bad)
    bad.write_text('{"resourceType": "Patient"}')
    with pytest.raises(DataError, match="not a FHIR Bundle"):
        patient_context(bad)

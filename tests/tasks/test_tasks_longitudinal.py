"""Comparison with a prior and grounding end to end with the scripted test generator
(medlens/test-scripted): parsing, urgency, FHIR, and a real patient pair from
../shared/data/cxr/covid_chestxray through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medlens.cli.main import app
from medlens.tasks.interpret.comparison import normalise_change, parse_comparison
from medlens.tasks.interpret.extra_stages import apply_comparison
from medlens.tasks.interpret.result import Urgency, UrgencyReason

COVID = "cxr/covid_chestxray/images"
PAIR = ("pneumococcal-pneumonia-day0.jpg", "pneumococcal-pneumonia-day7.jpg")  # patient 87


@pytest.mark.parametrize(
    ("text", "changes"),
    [
        ('```json\n{"comparison": "Worse.", "changes": [{"finding": "effusion", '
         '"change": "increased", "evidence": "bigger"}]}\n```', [("Pleural Effusion", "worsened")]),
        ('{"sentence": "x", "changes": [{"finding": "pneumothorax", "change": "New"}]}',
         [("Pneumothorax", "new")]),
        ("Overall improved.\n- edema: improving\n- pneumothorax: unchanged",
         [("Edema", "improved"), ("Pneumothorax", "stable")]),
        ('{"changes": [{"finding": "edema", "change": "sideways"}]}',
         [("Edema", "not assessable")]),
        ('{"changes": "nope"}', []),
        ("", []),
        ('{"changes": [5, {"finding": 3}]}', []),
    ],
)  # fmt: skip
def test_comparison_parser(text: str, changes: list[tuple[str, str]]) -> None:
    out = parse_comparison(text)
    assert [(c.finding, c.change) for c in out.changes] == changes


def test_change_words() -> None:
    assert normalise_change("Resolved") == "resolved"
    assert normalise_change("no change") == "stable"
    assert normalise_change("???") is None


def _urgent() -> Urgency:
    reason = UrgencyReason(rule_id="U01", level="urgent", reason="Pneumothorax reported.")
    return Urgency(level="urgent", reasons=[reason])


def _comparison(change: str, description: str = "1 prior image(s)"):
    out = parse_comparison(json.dumps({"changes": [{"finding": "pneumothorax", "change": change}]}))
    out.prior.description = description
    return out


def test_new_pneumothorax_is_urgent_and_stable_one_is_priority() -> None:
    routine = Urgency(level="routine")
    new = apply_comparison(routine, _comparison("new"), {})
    assert new.level == "urgent" and new.reasons[0].rule_id == "C01"
    stable = apply_comparison(_urgent(), _comparison("stable"), {})
    assert stable.level == "priority" and stable.reasons[0].rule_id == "C02"
    # From a prior report alone nothing is lowered.
    report_only = apply_comparison(_urgent(), _comparison("stable", "no prior image"), {})
    assert report_only.level == "urgent"


def test_cli_pair_end_to_end_with_fhir(shared_data: Path, tmp_path: Path) -> None:
    prior, current = (shared_data / COVID / name for name in PAIR)
    if not prior.exists():
        pytest.skip("covid_chestxray sample not present")
    (tmp_path / "prior.txt").write_text("Left lower lobe consolidation.", "utf-8")
    fhir_out = tmp_path / "dr.json"
    res = CliRunner().invoke(
        app,
        ["interpret", str(current), "--prior", str(prior), "--prior-report",
         str(tmp_path / "prior.txt"), "--prior-date", "7 days earlier", "--ground",
         "--model", "medlens/test-scripted", "--no-scores", "--json", "--fhir", str(fhir_out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["schema_version"] == "1.1"
    assert data["test_model_label"] == "TEST MODEL: output is not medical"
    comp = data["comparison"]
    assert comp["prior"]["date"] == "7 days earlier"
    assert {(c["finding"], c["change"]) for c in comp["changes"]} == {
        ("Pneumothorax", "new"),
        ("Pleural Effusion", "stable"),
    }
    assert data["urgency"]["level"] == "urgent"
    assert data["urgency"]["reasons"][0]["rule_id"] == "C01"
    regions = {r["label"]: r for r in data["regions"]}
    w, h = 1024, 840  # this image's size (covid metadata)
    eff = regions["right pleural effusion"]
    assert eff["source_sentence"] == "Small right pleural effusion."
    assert eff["box_norm"] == [600, 100, 900, 450]
    # by hand: side 1024, top pad 92; y = 600/1000*1024 - 92 = 522.4
    assert eff["box"] == pytest.approx([102.4, 522.4, 460.8, 829.6], abs=0.01)
    assert all(0 <= r["box"][0] < r["box"][2] <= w and r["box"][3] <= h for r in regions.values())
    assert regions["right lower lobe"]["warnings"]  # no finding by that name: kept, said
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport

    report = json.loads(fhir_out.read_text("utf-8"))
    DiagnosticReport.model_validate(report)
    observations = {
        o["code"]["text"]: o for o in report["contained"] if o["resourceType"] == "Observation"
    }
    from fhir.resources.R4B.observation import Observation

    for obs in observations.values():
        Observation.model_validate(obs)
    effusion = observations["Pleural Effusion (AI finding)"]
    assert "right pleural effusion" in effusion["bodySite"]["text"]
    assert effusion["interpretation"][0]["text"] == "stable since the prior study"
    pnx = observations["Pneumothorax (AI finding)"]
    assert pnx["interpretation"][0]["text"] == "new since the prior study"


def test_cli_ground_command(shared_data: Path) -> None:
    image = shared_data / COVID / PAIR[1]
    if not image.exists():
        pytest.skip("covid_chestxray sample not present")
    res = CliRunner().invoke(
        app,
        ["ground", str(image), "right lower lobe", "--model", "medlens/test-scripted", "--json"],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["test_model_label"] and data["disclaimer"]
    rll = next(r for r in data["regions"] if r["label"] == "right lower lobe")
    assert rll["warnings"] == [] and rll["box"][2] <= 1024


def test_bad_prior_date_is_one_line_error(shared_data: Path) -> None:
    image = shared_data / COVID / PAIR[1]
    res = CliRunner().invoke(
        app, ["interpret", str(image), "--prior-date", "last tuesday",
              "--model", "medlens/test-scripted", "--no-scores"],
    )  # fmt: skip
    assert res.exit_code != 0 and "--prior-date" in res.output

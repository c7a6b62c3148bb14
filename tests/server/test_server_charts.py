"""Score bars are coloured by meaning (issue 23 point 5): a likely abnormal finding is
"high" (the alarm colour), a likely normal class ("No Finding"...) never is."""

from __future__ import annotations

import re

import pytest

from medlens.server.charts import is_normal_label, score_charts
from medlens.tasks.interpret.result import (
    FindingScore,
    ImageFindingScores,
    Interpretation,
    Provenance,
)


def _interp(study_id: str, scores: dict[str, float]) -> Interpretation:
    return Interpretation(
        study_id=study_id, status="complete",
        finding_scores=[ImageFindingScores(image_index=0, label_set="cxr", scores=[
            FindingScore(label=k, probability=v) for k, v in scores.items()])],
        provenance=Provenance(medlens_version="0.9.0", created_at="2026-11-28T05:00:00+00:00"),
    )  # fmt: skip


@pytest.mark.parametrize(
    "label", ["No Finding", "Normal skin", "Normal mucosa", "No DR", "normal", " no finding "]
)
def test_normal_classes_of_every_label_set_are_recognised(label: str):
    assert is_normal_label(label)


@pytest.mark.parametrize(
    "label", ["Abnormal", "Pleural Effusion", "Mild NPDR", "Support Devices", "Lung Opacity"]
)
def test_findings_are_not_normal_classes(label: str):
    assert not is_normal_label(label)


def test_a_high_no_finding_is_normal_and_findings_keep_the_severity_scale():
    scores = {"No Finding": 0.93, "Pleural Effusion": 0.81, "Edema": 0.3, "Mass": 0.05}
    (chart,) = score_charts(_interp("s", scores))
    levels = {bar.label: bar.level for bar in chart.bars}
    assert levels == {"No Finding": "normal", "Pleural Effusion": "high", "Edema": "mid",
                      "Mass": "low"}  # fmt: skip
    assert chart.bars[0].label == "No Finding"  # still sorted by score
    (low,) = score_charts(_interp("s", {"No Finding": 0.02}))
    assert low.bars[0].level == "normal"  # low or high, a normal class is never alarming


def test_study_page_draws_no_finding_in_the_normal_colour(client_factory, upload, cxr_png):
    with client_factory() as client:
        study = upload(client, ("a.png", cxr_png)).json()
        store = client.app.state.medlens.store
        interp = _interp(study["id"], {"No Finding": 0.9, "Pleural Effusion": 0.7})
        store.save_interpretation(study["id"], study["job"]["id"], interp)
        html = client.get(f"/studies/{study['id']}").text
        bars = dict(
            (label, level)
            for level, label in re.findall(
                r'<g class="bar bar-(\w+)">\s*<text[^>]*>([^<]+)</text>', html
            )
        )
        assert bars == {"No Finding": "normal", "Pleural Effusion": "high"}
        css = client.get("/static/app.css").text
    fills = dict(re.findall(r"\.bar-(\w+) \.fill \{ fill: (#[0-9a-f]+); \}", css))
    assert fills["normal"] not in (fills["high"], fills["mid"])  # its own, calm colour

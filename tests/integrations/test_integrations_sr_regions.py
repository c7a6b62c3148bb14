"""Grounding boxes in the findings SR: TID 1410 groups with a closed POLYLINE SCOORD in
image pixel coordinates on the ORIGINAL source instance (dciodvfy-valid, read back with
highdicom). End to end through `medlens interpret --ground --sr` with the scripted model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from medlens.integrations.results import result_objects, sources_from_files, write_objects
from medlens.integrations.sr_regions import box_polyline, region_finding
from medlens.tasks.interpret.result import Region

from .results_helpers import RG1, dciodvfy_errors, interpretation

hd = pytest.importorskip("highdicom")


def _regions_read_back(path: Path) -> list[tuple[str, str, list[list[float]], str]]:
    """(finding code, graphic type, polyline, referenced SOP Instance UID) per ROI group."""
    content = hd.sr.srread(path).content
    out = []
    for g in content.get_planar_roi_measurement_groups():
        roi = g.roi
        # the SCOORD's SELECTED FROM child is the IMAGE item naming the source instance
        ref = roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        points = [[float(c) for c in p] for p in roi.value]
        out.append((g.finding_type.value, roi.graphic_type.value, points, str(ref)))
    return out


def _assert_polyline(points: list[list[float]], box: list[float]) -> None:
    assert len(points) == 5 and points[0] == points[-1]  # closed
    for got, want in zip(points, box_polyline(box), strict=True):
        # float32 (FL) storage only: far inside 0.5 px, so a half-pixel shift would fail
        assert got == pytest.approx(list(want), abs=0.01)


def test_box_polyline_is_closed_column_row_corners():
    assert box_polyline([10, 20, 30, 40]) == [(10, 20), (30, 20), (30, 40), (10, 40), (10, 20)]


def test_region_finding_matches_scored_labels_or_none():
    scored = ["Pleural Effusion", "Pneumothorax", "Lung Opacity"]
    assert region_finding("left pneumothorax", scored) == "Pneumothorax"
    assert region_finding("right pleural effusion", scored) == "Pleural Effusion"
    assert region_finding("opacity, lung base", scored) == "Lung Opacity"
    assert region_finding("right lower lobe", scored) is None


@pytest.mark.parametrize("with_scores", [True, False], ids=["scores", "boxes-only"])
def test_regions_become_scoord_groups_on_the_original_image(tmp_path: Path, with_scores: bool):
    interp = interpretation()
    interp.regions = [
        Region(label="right pleural effusion", box=[138.5, 1173.0, 822.75, 1759.5],
               box_norm=[600, 100, 900, 450], model="medlens/test-medgemma"),
        Region(label="right lower lobe", box=[0, 0, 1, 1], box_norm=[0, 0, 1, 1]),
    ]  # fmt: skip
    if not with_scores:
        interp.finding_scores = []
    sources = sources_from_files([RG1])
    (path,) = write_objects(result_objects(interp, sources)[:1], tmp_path)
    assert path.name.startswith("findings-")
    assert dciodvfy_errors(path) == []
    got = _regions_read_back(path)
    assert [(code, kind, ref) for code, kind, _, ref in got] == [
        ("60046008", "POLYLINE", sources[0].SOPInstanceUID),  # effusion (SCT)
        ("RIGHT-LOWER-LOBE", "POLYLINE", sources[0].SOPInstanceUID),  # no finding: own code
    ]
    for (_, _, points, _), region in zip(got, interp.regions, strict=True):
        _assert_polyline(points, region.box)
    # the per-finding TID 1501 groups are untouched by the boxes
    image_groups = hd.sr.srread(path).content.get_image_measurement_groups()
    assert len(image_groups) == (3 if with_scores else 0)


@pytest.mark.skipif(not RG1.exists(), reason="shared DICOM sample missing")
def test_interpret_ground_sr_end_to_end(tmp_path: Path):
    out = tmp_path / "sr"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MEDLENS_DATA_DIR": str(tmp_path / "data")}
    run = subprocess.run(
        [sys.executable, "-m", "medlens.cli.main", "interpret", str(RG1), "--model",
         "medlens/test-scripted", "--ground", "--sr", str(out), "--json"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    regions = json.loads(run.stdout)["regions"]
    assert regions, "the scripted model draws boxes"
    (path,) = sorted(out.glob("findings-*.dcm"))
    assert dciodvfy_errors(path) == []
    got = _regions_read_back(path)
    source_uid = pydicom.dcmread(RG1, stop_before_pixels=True).SOPInstanceUID
    assert len(got) == len(regions)
    for (_, kind, points, ref), region in zip(got, regions, strict=True):
        assert kind == "POLYLINE" and ref == source_uid
        _assert_polyline(points, region["box"])

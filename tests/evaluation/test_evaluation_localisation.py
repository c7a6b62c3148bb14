"""`medlens eval grounding` / `eval comparison` against hand-computed fixtures."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from medlens.cli.main import app
from medlens.evaluation.localisation import iou, read_boxes, score_changes, score_grounding

HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"


def _write(path, text):
    path.write_text(text, "utf-8")
    return path


def test_iou_by_hand() -> None:
    # [0,0,10,10] vs [5,0,15,10]: overlap 50, union 150.
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0


def test_grounding_cli_hand_computed(tmp_path) -> None:
    ref = _write(
        tmp_path / "ref.csv",
        HEADER
        + "a.png,Effusion,0,0,10,10\n"  # pred identical: IoU 1
        + "a.png,Atelectasis,0,0,10,10\n"  # pred shifted by 5: IoU 1/3
        + "b.png,Nodule,0,0,10,10\n",  # no prediction: IoU 0
    )
    pred = _write(
        tmp_path / "pred.csv",
        HEADER + "a.png,Effusion,0,0,10,10\na.png,Atelectasis,5,0,10,10\n",
    )
    res = CliRunner().invoke(app, ["eval", "grounding", str(pred), str(ref), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["mean_iou"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert data["hit_rate"] == pytest.approx(1 / 3)
    assert data["per_label"]["atelectasis"] == pytest.approx(1 / 3)
    text = CliRunner().invoke(app, ["eval", "grounding", str(pred), str(ref)]).output
    assert "mean IoU: 0.4444" in text and "hit rate (IoU >= 0.5): 0.3333" in text


def test_medlens_json_folder_against_imagenome(tmp_path) -> None:
    (tmp_path / "pred").mkdir()
    interp = {
        "regions": [
            {"label": "right pleural effusion", "image_index": 0, "box": [0, 0, 20, 10]},
        ],
        "provenance": {"inputs": [{"image_index": 0, "source_name": "img1.dcm"}]},
    }
    _write(tmp_path / "pred" / "s1.json", json.dumps(interp))
    ref = {
        "image_id": "img1",
        "objects": [
            {"bbox_name": "pleural effusion", "original_x1": 0, "original_y1": 0,
             "original_x2": 10, "original_y2": 10},
        ],
    }  # fmt: skip
    _write(tmp_path / "ref.json", json.dumps(ref))
    scores = score_grounding(read_boxes(tmp_path / "pred"), read_boxes(tmp_path / "ref.json"))
    assert scores.mean_iou == pytest.approx(0.5)  # 100 / 200
    assert scores.hit_rate == 1.0


def test_bad_reference_is_a_clear_error(tmp_path) -> None:
    bad = _write(tmp_path / "bad.csv", "foo,bar\n1,2\n")
    res = CliRunner().invoke(app, ["eval", "grounding", str(bad), str(bad)])
    assert res.exit_code != 0 and "Image Index" in res.output


def test_comparison_cli_hand_computed(tmp_path) -> None:
    ref = _write(
        tmp_path / "ref.csv",
        "dicom_id,previous_dicom_id,pneumothorax,pleural_effusion,edema\n"
        "d1,p1,worsening,stable,\n"
        "d2,p2,improving,,stable\n",
    )
    pred = _write(
        tmp_path / "pred.csv",
        "dicom_id,previous_dicom_id,pneumothorax,pleural_effusion,edema\n"
        "d1,p1,worsening,worsening,\n"
        "d2,p2,improving,,stable\n",
    )
    res = CliRunner().invoke(app, ["eval", "comparison", str(pred), str(ref), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    # 4 labelled pairs, 3 right. F1: worsening 2/3 (tp1 fp1), stable 2/3 (tp1 fn1), improving 1.
    assert data["accuracy"] == pytest.approx(0.75)
    assert data["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)


def test_medlens_changes_map_to_mscxrt() -> None:
    ref = {("d1", "pneumothorax"): "worsening", ("d1", "pleural effusion"): "stable"}
    pred = {("d1", "pneumothorax"): "worsening"}
    scores = score_changes(pred, ref)
    assert scores["accuracy"] == 0.5

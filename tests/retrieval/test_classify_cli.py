"""`medlens classify` and the chest X-ray gate (issue 23, point 3): the `cxr` label set
scores only what the gate accepts, like an upload or `interpret`; a photo gets a one-line
refusal and exit code 3 (as `interpret` when every image is refused), never chest X-ray
scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from medlens.cli.main import app

ENC = "medlens/test-medsiglip"
runner = CliRunner()


@pytest.fixture(scope="module")
def grey_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from skimage import data

    path = tmp_path_factory.mktemp("photo") / "camera.png"
    Image.fromarray(data.camera()).save(path)  # greyscale, but a photograph
    return path


def _classify(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["classify", *args, "--encoder", ENC])


def test_a_grey_photo_is_refused(tiny_test_models, grey_photo: Path) -> None:
    res = _classify(str(grey_photo), "--json")
    assert res.exit_code == 3, res.output
    assert "Traceback" not in res.output and res.stdout == ""  # no scores, not even JSON
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: camera.png: image refused for chest X-ray scores: ")
    assert "does not look like a chest radiograph" in lines[0]


def test_chest_xrays_get_scores_and_one_photo_refuses_the_run(
    tiny_test_models, nih_images: list[Path], dicom_dir: Path, grey_photo: Path
) -> None:
    cxrs = [nih_images[0], dicom_dir / "RG1_J2KI.dcm"]  # a PNG and a CR DICOM
    res = _classify(*map(str, cxrs), "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [r["image"] for r in out["results"]] == [str(p) for p in cxrs]
    assert all(len(r["probabilities"]) == 14 for r in out["results"])
    mixed = _classify(str(cxrs[0]), str(grey_photo))
    assert mixed.exit_code == 3 and "camera.png" in mixed.stderr
    assert nih_images[0].name not in mixed.stdout  # nothing scored when any is refused


def test_other_label_sets_are_not_chest_gated(tiny_test_models, grey_photo: Path) -> None:
    res = _classify(str(grey_photo), "--labels", "dermatology", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["label_set"] == "dermatology"

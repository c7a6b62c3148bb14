"""`medlens ground` and the chest X-ray gate (issue 23, point 3): boxes only on what the
gate's model-free half accepts; a photo gets the same one-line refusal as `classify` and
the exit code of `interpret` when every image is refused (3), before any model loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from medlens.cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def grey_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from skimage import data

    path = tmp_path_factory.mktemp("photo") / "camera.png"
    Image.fromarray(data.camera()).save(path)  # greyscale, but a photograph
    return path


def _ground(image: Path, model: str = "medlens/test-scripted"):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["ground", str(image), "right lower lobe", "--generator", model,
                               "--json"])  # fmt: skip


def test_a_grey_photo_is_refused_before_the_model_loads(grey_photo: Path) -> None:
    # an unknown model id would fail on loading: the refusal comes first
    res = _ground(grey_photo, model="no-such/model")
    assert res.exit_code == 3, res.output
    assert "Traceback" not in res.output and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: camera.png: image refused for chest X-ray boxes: ")
    assert "does not look like a chest radiograph" in lines[0]


def test_a_wrong_modality_dicom_is_refused(dicom_dir: Path) -> None:
    res = _ground(dicom_dir / "CT_small.dcm")
    assert res.exit_code == 3, res.output
    assert res.stderr.startswith("error: CT_small.dcm: image refused for chest X-ray boxes: ")
    assert "CT" in res.stderr


def test_a_chest_xray_still_gets_its_boxes(nih_images: list[Path]) -> None:
    res = _ground(nih_images[0])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["image"] == nih_images[0].name and data["test_model_label"]

"""The model-free non-radiograph check (imaging.radiograph_stats) measured: false accepts on
>= 200 generated non-radiographs, false rejects on every radiograph in ../shared/data per
collection, for the shipped model and for the held-out half of a calibration-split refit.
The numbers are the ones docs/imaging.md states (checked below)."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medlens.imaging.gate import gate_chest_xray
from medlens.imaging.ingest import ingest
from medlens.imaging.radiograph_stats import FEATURES, check_radiograph, fit_model, load_model

if str(Path(__file__).parent) not in sys.path:  # the data helper beside this file
    sys.path.insert(0, str(Path(__file__).parent))
from radiograph_check_data import COLLECTIONS, nonradiograph_images, radiographs

REPO = Path(__file__).resolve().parents[2]
ARTIFACT = REPO / "test-artifacts" / "radiograph_check.json"
MAX_FALSE_ACCEPT = 0.05
MAX_FALSE_REJECT = {"nih_cxr14_sample": 0.0, "cr_dx_dicom": 0.0, "covid_chestxray": 0.05}


@pytest.fixture(scope="module")
def positives(shared_data: Path) -> list[tuple[str, str, str, Image.Image]]:
    return [(c, n, s, img.image) for c, n, s, img in radiographs(shared_data)]


@pytest.fixture(scope="module")
def negatives() -> list[tuple[str, str, Image.Image]]:
    return list(nonradiograph_images())


def _rates(model, positives, negatives, split: str) -> dict[str, dict[str, object]]:
    def accepted(im: Image.Image) -> bool:
        return check_radiograph(im, model).looks_like_radiograph

    negs = [(n, im) for n, s, im in negatives if split in ("all", s)]
    fa = [n for n, im in negs if accepted(im)]
    out: dict[str, dict[str, object]] = {
        "false_accept": {"n": len(negs), "errors": len(fa), "names": fa}
    }
    for coll in COLLECTIONS:
        pos = [(n, im) for c, n, s, im in positives if c == coll and split in ("all", s)]
        fr = [n for n, im in pos if not accepted(im)]
        out[coll] = {"n": len(pos), "errors": len(fr), "names": fr}
    return out


def _assert_targets(rates: dict[str, dict[str, object]]) -> None:
    fa = rates["false_accept"]
    assert fa["errors"] <= MAX_FALSE_ACCEPT * fa["n"], fa
    for coll, limit in MAX_FALSE_REJECT.items():
        r = rates[coll]
        assert r["errors"] <= limit * r["n"], (coll, r)


def test_false_accept_and_false_reject_rates_meet_the_targets(positives, negatives) -> None:
    assert len(negatives) >= 200
    assert {c for c, *_ in positives} == set(COLLECTIONS)  # every collection is measured
    shipped = _rates(load_model(), positives, negatives, "all")
    _assert_targets(shipped)
    # The shipped model is fitted on the calibration half only; the held-out half is what
    # it never saw (radiographs) and what was never looked at while choosing features.
    held_out = _rates(load_model(), positives, negatives, "held-out")
    _assert_targets(held_out)
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text(json.dumps({"all": shipped, "held-out": held_out}, indent=1))
    _assert_docs_state(shipped, held_out)


def test_shipped_model_is_the_calibration_split_fit(positives) -> None:
    refit = fit_model([im for _, _, s, im in positives if s == "calibration"])
    shipped = load_model()
    assert shipped.n_fit == refit.n_fit
    np.testing.assert_allclose(shipped.low, refit.low, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(shipped.high, refit.high, rtol=1e-4, atol=1e-4)
    assert shipped.max_distance == pytest.approx(refit.max_distance, rel=1e-3)
    assert len(shipped.mean) == len(FEATURES)


def _assert_docs_state(shipped, held_out) -> None:
    """docs/imaging.md states these counts ("false accepts 2/290" ...): keep it honest."""
    text = (REPO / "docs" / "imaging.md").read_text()
    for label, rates in (("all", shipped), ("held-out", held_out)):
        line = next((ln for ln in text.splitlines() if ln.startswith(f"| {label} |")), None)
        assert line is not None, f"docs/imaging.md has no '| {label} |' row"
        counts = re.findall(r"(\d+)/(\d+)", line)
        keys = ["false_accept", *COLLECTIONS]
        stated = {k: (int(a), int(b)) for k, (a, b) in zip(keys, counts, strict=True)}
        for k in keys:
            assert stated[k] == (rates[k]["errors"], rates[k]["n"]), (label, k, stated[k])


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_gate_refuses_a_grey_outdoor_photo_with_a_reason() -> None:
    from skimage import data

    photo = Image.fromarray(data.rocket()).convert("L")  # the case: a grey photo
    decision = gate_chest_xray(ingest(_png(photo)))
    assert not decision.accepted
    assert "does not look like a chest radiograph" in decision.reason
    assert any(c.name == "radiograph" and not c.passed for c in decision.checks)


def test_gate_accepts_a_shared_chest_xray_through_the_check(nih_images: list[Path]) -> None:
    decision = gate_chest_xray(ingest(nih_images[0]))
    assert decision.accepted
    assert any(c.name == "radiograph" and c.passed for c in decision.checks)


def test_too_few_radiographs_to_fit_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="need at least"):
        fit_model([Image.new("L", (100, 100), 10)])

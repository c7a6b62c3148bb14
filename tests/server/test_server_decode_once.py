"""One upload → one decode of each original: the job and every image view (windowing
included) work from the pixels decoded at upload."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from medlens.jobs import intake

from .job_helpers import wait_job


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Calls of the real decode entry points (DICOM pixel data, PNG/JPEG), still run."""
    from medlens.imaging import dicom_decode, raster

    counts: Counter[str] = Counter()

    def wrap(module: Any, name: str) -> None:
        real = getattr(module, name)

        def counting(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, counting)

    wrap(dicom_decode, "decode_pixels")
    wrap(raster, "decode_raster")
    intake.DECODED.clear()  # earlier tests' pixels must not count as "not decoded"
    yield counts
    intake.DECODED.clear()




def _three_views(client: Any, image: dict[str, Any]) -> list[bytes]:
    """The page's calls: the window defaults, the default view, two window changes."""
    url = image["url"]
    window = client.get(url.removesuffix(".png") + "/window")
    assert window.status_code == 200
    center = (window.json() or {}).get("center", 0.0)
    pngs = []
    for params in ({}, {"wc": center, "ww": 100}, {"wc": center, "ww": 4000}):
        r = client.get(url, params=params)
        assert r.status_code == 200 and r.content.startswith(b"\x89PNG")
        pngs.append(r.content)
    return pngs


def test_upload_job_and_views_decode_each_original_once(
    client_factory, upload, tiny_test_models, dicom_dir, cxr_png, decodes
):
    dicom = (dicom_dir / "RG1_J2KI.dcm").read_bytes()
    with client_factory(run_jobs=True) as client:
        r = upload(client, ("chest.dcm", dicom), ("chest.png", cxr_png))
        assert r.status_code == 201, r.text
        assert decodes == {"decode_pixels": 1, "decode_raster": 1}
        created = r.json()
        assert wait_job(client, created["job"]["id"])["status"] == "done"
        interp = client.get(created["interpretation_url"]).json()
        assert [g["source_name"] for g in interp["gate"]] == ["image 1", "image 2"]  # no names
        dcm_views = _three_views(client, created["images"][0])
        png_views = _three_views(client, created["images"][1])
        stored_png = client.app.state.medlens.store.blobs.read(created["images"][1]["sha256"])
    assert decodes == {"decode_pixels": 1, "decode_raster": 1}
    assert len(set(dcm_views)) == 3  # each window renders differently
    # PNG: served as stored by default; a window stretches its 8-bit values (issue 20: one
    # window/level control for a prior/current pair), from the same decoded copy
    assert png_views[0] == stored_png and len(set(png_views)) == 3


def test_a_fresh_process_views_from_the_stored_copy_without_decoding(
    client_factory, upload, dicom_dir, decodes
):
    """A second server process (empty memory cache) reads the copy kept beside the blob."""
    dicom = (dicom_dir / "RG1_J2KI.dcm").read_bytes()
    with client_factory() as client:
        created = upload(client, ("chest.dcm", dicom)).json()
        image = created["images"][0]
        warm = _three_views(client, image)
        window = client.get(image["url"].removesuffix(".png") + "/window").json()
        intake.DECODED.clear()
        assert _three_views(client, image) == warm
        assert client.get(image["url"].removesuffix(".png") + "/window").json() == window
    assert decodes["decode_pixels"] == 1
    # The stored bit depth (this file's values span 803..26512) and the file's own window.
    assert window == {"min": 803.0, "max": 26512.0, "center": 15000.0, "width": 30000.0}


def test_a_study_stored_before_copies_existed_is_decoded_once(
    client_factory, upload, dicom_dir, decodes
):
    dicom = (dicom_dir / "RG1_J2KI.dcm").read_bytes()
    with client_factory() as client:
        created = upload(client, ("chest.dcm", dicom)).json()
        blobs = client.app.state.medlens.store.blobs
        sha = created["images"][0]["sha256"]
        before = _three_views(client, created["images"][0])
        blobs.derived_path(sha, intake.DECODED_KIND).unlink()  # as stored by older versions
        intake.DECODED.clear()
        after = _three_views(client, created["images"][0])
        assert _three_views(client, created["images"][0]) == after == before
        assert blobs.read_derived(sha, intake.DECODED_KIND) is not None  # written back
    assert decodes["decode_pixels"] == 2  # the upload, then once for the old study


def _hook(counts: Counter[str], name: str) -> Any:
    def hook(_module: Any, _args: Any, output: Any) -> None:
        hidden = output[0] if isinstance(output, tuple) else output.last_hidden_state
        counts[name] += int(hidden.shape[0])  # images this forward pass encoded

    return hook


def test_a_whole_study_through_the_api_decodes_and_encodes_each_image_once(
    client_factory, upload, tiny_test_models, cxr_png, nih_images, tmp_path, decodes,
    monkeypatch,
):
    """Issue 17's count: one upload → one decode of the original, one MedSigLIP and one
    MedGemma image-tower pass, for gate + scores + similar cases + urgency + report + two
    follow-ups + three image views with windowing (real tiny models, forward hooks)."""
    from dataclasses import replace

    import numpy as np

    from medlens.models.session import default_session
    from medlens.tasks.classify.probes import Probe, save_probe
    from medlens.tasks.retrieval.cases_csv import CaseInput
    from medlens.tasks.retrieval.library import CaseLibrary

    from .conftest import TINY_ENCODER, TINY_GENERATOR, make_settings

    data_dir = tmp_path / "study"
    settings = make_settings(data_dir)
    session = default_session()
    enc, enc_rec = session.encoder_for(settings, TINY_ENCODER)
    gen = session.generator(TINY_GENERATOR, settings)
    # The gate trusts no test encoder; pretend this one is real so its zero-shot runs too,
    # and let its random-weight verdict pass (the count is what this test is about).
    from medlens.tasks.interpret import gate

    monkeypatch.setattr(enc, "info", replace(enc.info, is_test=False))
    real_check, zero_shots = gate.zero_shot_check, []

    def passing_check(encoder: Any, part: Any) -> Any:
        zero_shots.append(real_check(encoder, part))
        return replace(zero_shots[-1], passed=True)

    monkeypatch.setattr(gate, "zero_shot_check", passing_check)
    from medlens.imaging import gate as pixel

    real_pixel_gate, pixel_gates = pixel.gate_chest_xray, []

    def counting_pixel_gate(img: Any) -> Any:
        pixel_gates.append(img.source_name)
        return real_pixel_gate(img)

    monkeypatch.setattr(pixel, "gate_chest_xray", counting_pixel_gate)
    monkeypatch.setattr(gate, "pixel_gate", counting_pixel_gate)
    probe = Probe(name="urgent", label="urgent", version="1", encoder_id=enc.info.model_id,
                  weights=np.zeros(enc.dim), bias=-5.0, calib_a=1.0, calib_b=0.0,
                  threshold=0.5)
    probe_path = save_probe(probe, tmp_path / "probes")
    with CaseLibrary.open(settings, encoder_id=TINY_ENCODER) as lib:
        lib.add_cases(enc, enc_rec, [CaseInput(p, f"case{i}") for i, p in
                                     enumerate(nih_images[1:4])])
    enc.clear_cache()
    gen.clear_image_cache()
    decodes.clear()
    towers: Counter[str] = Counter()
    gen_tower = getattr(gen.model, "vision_tower", None) or gen.model.model.vision_tower
    handles = [enc.model.vision_model.register_forward_hook(_hook(towers, "medsiglip")),
               gen_tower.register_forward_hook(_hook(towers, "medgemma"))]
    try:
        with client_factory(run_jobs=True, data_dir=data_dir,
                            probes={"urgent": str(probe_path)}) as client:
            created = upload(client, ("chest.png", cxr_png)).json()
            assert wait_job(client, created["job"]["id"])["status"] == "done"
            interp = client.get(created["interpretation_url"]).json()
            sid = created["id"]
            for question in ("Is there an effusion?", "Any pneumothorax?"):
                r = client.post(f"/v1/studies/{sid}/messages", json={"content": question})
                assert r.status_code == 202, r.text
                assert wait_job(client, r.json()["job"]["id"])["status"] == "done"
            answers = [m for m in client.get(f"/v1/studies/{sid}/messages").json()
                       if m["role"] == "assistant"]
            _three_views(client, created["images"][0])
    finally:
        for h in handles:
            h.remove()
    assert [g["accepted"] for g in interp["gate"]] == [True] and len(zero_shots) == 1
    assert pixel_gates == ["image 1"]  # at upload; the job reuses that decision
    assert interp["finding_scores"] and interp["similar_cases"]
    assert interp["urgency"]["probe"] is not None
    assert len(answers) == 2
    assert decodes == {"decode_raster": 1}
    assert towers == {"medsiglip": 1, "medgemma": 1}

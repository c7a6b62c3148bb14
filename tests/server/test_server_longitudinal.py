"""API: `ground`, `prior_study_id`, `prior_date`, `prior_report` upload fields with the
scripted test generator, on a real patient pair from covid_chestxray."""

from __future__ import annotations

from pathlib import Path

import pytest

from .job_helpers import wait_job

PAIR = ("pneumococcal-pneumonia-day0.jpg", "pneumococcal-pneumonia-day7.jpg")  # patient 87




def test_pair_through_the_api(client_factory, upload, tiny_test_models, shared_data: Path):
    images = shared_data / "cxr" / "covid_chestxray" / "images"
    if not (images / PAIR[0]).exists():
        pytest.skip("covid_chestxray sample not present")
    prior_bytes, current_bytes = ((images / n).read_bytes() for n in PAIR)
    with client_factory(run_jobs=True, generator="medlens/test-scripted") as client:
        first = upload(client, ("a.jpg", prior_bytes)).json()
        assert wait_job(client, first["job"]["id"])["status"] == "done"
        r = upload(
            client, ("b.jpg", current_bytes), ground="true",
            prior_study_id=first["id"], prior_date="2020-03-01",
        )  # fmt: skip
        assert r.status_code == 201, r.text
        second = r.json()
        assert second["context"]["prior_study_id"] == first["id"]
        assert wait_job(client, second["job"]["id"])["status"] == "done"
        interp = client.get(second["interpretation_url"]).json()
        assert interp["comparison"]["prior"]["source_study_id"] == first["id"]
        assert interp["comparison"]["prior"]["date"] == "2020-03-01"
        assert [g["timepoint"] for g in interp["gate"]] == ["current", "prior"]
        assert {r["label"] for r in interp["regions"]} >= {"right pleural effusion"}
        assert interp["test_model_label"]
        # Validation: unknown prior study (404), bad flag and date (400), unknown field.
        assert upload(client, ("b.jpg", current_bytes), prior_study_id="nope").status_code == 404
        assert upload(client, ("b.jpg", current_bytes), ground="maybe").status_code == 400
        assert upload(client, ("b.jpg", current_bytes), prior_date="soon").status_code == 400

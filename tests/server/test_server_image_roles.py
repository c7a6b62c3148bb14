"""Image roles (issue 23 point 4): the upload's per-file `view` field reaches the stored
context, the API's study JSON, the interpret job's task Study and the study page, with
a prior study's images shown as "Prior · <view> · <date>"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .dicom_helpers import chest_dicom
from .job_helpers import wait_job


def _post(client: Any, files: list[tuple[str, bytes]], views: list[str], **fields: str) -> Any:
    data: dict[str, Any] = dict(fields)
    if views:
        data["view"] = views
    parts = [("files", (n, d, "application/octet-stream")) for n, d in files]
    return client.post("/v1/studies", files=parts, data=data)


def _roles(html: str) -> list[str]:
    import re

    return re.findall(r'data-testid="image-role"[^>]*>([^<]*)<', html)


def test_declared_lateral_and_prior_reach_api_job_and_page(
    client_factory, tiny_test_models, nih_images: list[Path]
):
    if len(nih_images) < 3:
        pytest.skip("needs three NIH sample images")
    prior_png, front_png, side_png = (p.read_bytes() for p in nih_images[:3])
    with client_factory(run_jobs=True) as client:
        prior = _post(client, [("p.png", prior_png)], ["frontal"]).json()
        assert wait_job(client, prior["job"]["id"])["status"] == "done"
        r = _post(
            client, [("f.png", front_png), ("l.png", side_png)], ["frontal", "lateral"],
            prior_study_id=prior["id"], prior_date="2026-11-01",
        )  # fmt: skip
        assert r.status_code == 201, r.text
        study = r.json()
        assert study["context"]["views"] == ["frontal", "lateral"]
        assert [(i["view"], i["timepoint"]) for i in study["images"]] == [
            ("frontal", "current"),
            ("lateral", "current"),
        ]
        prior_roles = [
            (i["view"], i["timepoint"], i["date"], i["study_id"]) for i in study["prior_images"]
        ]
        assert prior_roles == [("frontal", "prior", "2026-11-01", prior["id"])]
        got = client.get(f"/v1/studies/{study['id']}").json()
        assert got["images"] == study["images"] and got["prior_images"] == study["prior_images"]

        # The job's task Study: the declared lateral and the prior, in the gate's record.
        assert wait_job(client, study["job"]["id"])["status"] == "done"
        interp = client.get(study["interpretation_url"]).json()
        assert [(g["view"], g["timepoint"]) for g in interp["gate"]] == [
            ("frontal", "current"),
            ("lateral", "current"),
            ("frontal", "prior"),
        ]

        html = client.get(f"/studies/{study['id']}").text
        assert sorted(_roles(html)) == [
            "Current · frontal",
            "Current · lateral",
            "Prior · frontal · 2026-11-01",
        ]


def test_auto_views_come_from_view_position_or_stay_unstated(client_factory, cxr_png):
    with client_factory() as client:
        r = _post(client, [("a.png", cxr_png)], [])
        assert r.status_code == 201, r.text
        study = r.json()
        assert "views" not in study["context"]  # nothing declared: context unchanged
        assert study["images"][0]["view"] == "unknown"
        assert _roles(client.get(f"/studies/{study['id']}").text) == ["Current · view not stated"]
        client.cookies.clear()  # the page's session cookie would ask the API for a CSRF token
        r = _post(client, [("b.dcm", chest_dicom(view_position="LL"))], ["auto"])
        assert r.status_code == 201, r.text
        assert r.json()["images"][0]["view"] == "lateral"  # from the DICOM ViewPosition


@pytest.mark.parametrize(
    ("views", "needle"),
    [
        (["sideways"], "'view' number 1 is 'sideways'"),
        (["frontal", "lateral"], "2 'view' fields for 1 file"),
    ],
)
def test_a_bad_view_is_refused_with_422_and_nothing_stored(
    client_factory, cxr_png, views: list[str], needle: str
):
    with client_factory() as client:
        r = _post(client, [("a.png", cxr_png)], views)
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["code"] == "invalid_view"
        assert needle in error["message"] and "one per file" in error["message"]
        assert client.get("/v1/studies").json()["studies"] == []

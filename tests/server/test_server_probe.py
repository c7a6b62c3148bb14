"""Regression tests for the attacker probe's findings (issue 18): PHI-named uploads,
per-caller rate limits, audited image views, the API schema behind auth.
(Birth date: tests/imaging/test_imaging_deid_birthdate.py; waiting chats:
test_server_inference_queue.py; crash loops: tests/jobs/test_jobs_crashloop.py.)"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import pytest

TOKEN = "probe-token-for-tests-0123456789abcdef"
PHI_NAME = "Doe_John_DOB19510407_MRN55123.dcm"
PHI_PARTS = ("Doe_John", "19510407", "MRN55123")


def _csrf(client) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', client.get("/").text).group(1)


def _wait_done(client, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish")


def test_a_phi_named_upload_leaves_no_trace_of_its_name(
    client_factory, upload, tiny_test_models, dicom_dir: Path, tmp_path: Path, caplog
):
    caplog.set_level(logging.DEBUG)
    data_dir = tmp_path / "phi-data"
    with client_factory(run_jobs=True, data_dir=data_dir) as client:
        r = upload(client, (PHI_NAME, (dicom_dir / "RG1_J2KI.dcm").read_bytes()))
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["images"][0]["filename"] == "image 1"
        job = _wait_done(client, body["job"]["id"])
        assert job["status"] == "done", job
        served = [client.get(f"/v1/studies/{body['id']}").text,
                  client.get(f"/v1/studies/{body['id']}/interpretation").text,
                  client.get(f"/studies/{body['id']}").text]  # fmt: skip
        assert "image 1" in served[1]  # the gate's record names the image by position
        _assert_no_phi_in_files(data_dir, wal=True)  # while running: the WAL is there
    _assert_no_phi_in_files(data_dir, wal=False)
    for part in PHI_PARTS:
        for text in [*served, caplog.text]:
            assert part not in text


def _assert_no_phi_in_files(data_dir: Path, *, wal: bool) -> None:
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert "medlens.db" in names and (not wal or "medlens.db-wal" in names), names
    assert any("images" in p.parts for p in files)  # blobs and derived copies are searched
    for part in PHI_PARTS:
        for path in files:  # the database, its WAL, blobs, derived files, secrets...
            assert part.encode() not in path.read_bytes(), (part, path)


def test_rate_limit_is_per_caller_not_per_session(client_factory, upload, cxr_png):
    """No auth: 100 uploads in a minute from one address, a fresh session for each."""
    with client_factory(rate_limit_per_minute=10) as client:
        codes = []
        for _ in range(100):
            client.cookies.clear()
            csrf = _csrf(client)  # a new page session, hence (before) a new allowance
            r = client.post("/v1/studies", files=[("files", ("x.png", cxr_png, "image/png"))],
                            headers={"X-CSRF-Token": csrf})  # fmt: skip
            codes.append(r.status_code)
        assert all(c in (200, 201) for c in codes[:10]), codes[:10]
        assert codes[10:] == [429] * 90


def test_rate_limit_follows_the_token_through_page_logins(client_factory):
    with client_factory(api_tokens=[TOKEN], rate_limit_per_minute=5) as client:
        codes = [client.get("/v1/studies", headers={"Authorization": f"Bearer {TOKEN}"})
                 .status_code for _ in range(2)]  # fmt: skip
        for _ in range(2):  # each login is a fresh session of the same token
            client.cookies.clear()
            page = client.get("/login")
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
            client.post("/login", data={"token": TOKEN, "csrf": csrf}, follow_redirects=False)
            codes += [client.get("/v1/studies").status_code for _ in range(3)]
        assert codes == [200] * 5 + [429] * 3, codes


def test_image_views_are_audited(client_factory, upload, cxr_png):
    with client_factory() as client:
        study = upload(client, ("a.png", cxr_png)).json()
        assert client.get(f"/v1/studies/{study['id']}/images/0.png").status_code == 200
        assert client.get(f"/v1/studies/{study['id']}/images/0/window").status_code == 200
        store = client.app.state.medlens.store
        views = [e for e in store.list_audit(study_id=study["id"]) if e.action == "view_image"]
        assert len(views) == 2 and {e.actor for e in views} == {"local"}
        assert {e.detail.get("what") for e in views} == {None, "window"}


@pytest.mark.parametrize("path", ["/openapi.json", "/docs"])
def test_api_schema_is_behind_auth_when_auth_is_on(client_factory, path):
    with client_factory(api_tokens=[TOKEN]) as client:
        assert client.get(path).status_code == 401
        ok = client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and "/v1/studies" in ok.text
    with client_factory(api_tokens=[TOKEN], open_api_docs=True) as client:
        assert client.get(path).status_code == 200  # opened on purpose
    with client_factory() as client:  # no auth (loopback only): open
        assert client.get(path).status_code == 200

"""The native API with the real store (jobs left queued: no models needed here)."""

from __future__ import annotations

from medlens.disclaimer import DISCLAIMER


def test_upload_creates_study_and_queued_job(client_factory, upload, cxr_png):
    with client_factory() as client:
        r = upload(client, ("chest.png", cxr_png), indication="cough", age="64", sex="female",
                   language="fr")
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["created"] is True
        assert body["context"] == {"indication": "cough", "age": "64", "sex": "female",
                                   "language": "fr", "demo": True}  # a demo-mode app
        assert body["job"]["status"] == "queued"
        assert body["disclaimer"] == DISCLAIMER
        assert r.headers["location"] == f"/v1/studies/{body['id']}"
        listed = client.get("/v1/studies").json()["studies"]
        assert [s["id"] for s in listed] == [body["id"]]
        shown = client.get(f"/v1/studies/{body['id']}").json()
        assert shown["images"][0]["filename"] == "image 1"  # never the file's name (PHI)
        job = client.get(f"/v1/jobs/{body['job']['id']}").json()
        assert job["status"] == "queued" and job["study_id"] == body["id"]


def test_same_upload_twice_gives_one_study(client_factory, upload, cxr_png):
    with client_factory() as client:
        first = upload(client, ("a.png", cxr_png))
        again = upload(client, ("renamed.png", cxr_png))
        assert first.status_code == 201 and again.status_code == 200
        assert again.json()["created"] is False
        assert again.json()["id"] == first.json()["id"]
        assert again.json()["job"]["id"] == first.json()["job"]["id"]  # no second job
        assert len(client.get("/v1/studies").json()["studies"]) == 1


def test_idempotency_key_retry_gives_one_study(client_factory, upload, cxr_png, cxr_png_2):
    with client_factory() as client:
        key = {"Idempotency-Key": "retry-7f3a"}
        first = upload(client, ("a.png", cxr_png), headers=key)
        retry = upload(client, ("a.png", cxr_png), headers=key)
        assert retry.json()["id"] == first.json()["id"]
        # The same key with different images is a client bug: refused, not merged.
        clash = upload(client, ("b.png", cxr_png_2), headers=key)
        assert clash.status_code == 409, clash.text
        assert len(client.get("/v1/studies").json()["studies"]) == 1


def test_multiple_files_make_one_study(client_factory, upload, cxr_png, cxr_png_2):
    with client_factory() as client:
        r = upload(client, ("a.png", cxr_png), ("b.png", cxr_png_2))
        assert r.status_code == 201
        assert [i["position"] for i in r.json()["images"]] == [0, 1]
        png = client.get(r.json()["images"][1]["url"])
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")


def test_delete_removes_study_and_is_audited(client_factory, upload, cxr_png):
    with client_factory() as client:
        sid = upload(client, ("a.png", cxr_png)).json()["id"]
        assert client.delete(f"/v1/studies/{sid}").status_code == 204
        assert client.get(f"/v1/studies/{sid}").status_code == 404
        assert client.delete(f"/v1/studies/{sid}").status_code == 404
        events = client.app.state.medlens.store.list_audit(limit=50)
        actions = [(e.action, e.outcome) for e in events if e.study_id == sid]
        assert ("upload", "ok") in actions and ("delete", "ok") in actions
        assert ("delete", "not_found") in actions
        assert all(e.actor == "local" for e in events)


def test_unsupported_type_is_415(client_factory, upload, zip_as_png):
    with client_factory() as client:
        r = upload(client, ("scan.png", zip_as_png))
        assert r.status_code == 415
        assert r.json()["error"]["code"] == "unsupported_media_type"
        assert "ZIP" in r.json()["error"]["message"]
        assert client.get("/v1/studies").json()["studies"] == []
        refused = client.app.state.medlens.store.list_audit(limit=10)
        assert [(e.action, e.outcome) for e in refused] == [("upload", "refused")]


def test_truncated_dicom_is_422(client_factory, upload, truncated_dicom):
    with client_factory() as client:
        r = upload(client, ("RG1_J2KI.dcm", truncated_dicom))
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "truncated_image"
        assert "truncated" in r.json()["error"]["message"]
        assert client.get("/v1/studies").json()["studies"] == []


def test_no_files_and_unknown_fields_are_400(client_factory, upload, cxr_png):
    with client_factory() as client:
        r = client.post("/v1/studies", data={"indication": "x"})
        assert r.status_code == 400
        r = upload(client, ("a.png", cxr_png), surprise="1")
        assert r.status_code == 400 and "surprise" in r.json()["error"]["message"]
        r = upload(client, ("a.png", cxr_png), language="not a language")
        assert r.status_code == 400


def test_traversal_filename_is_only_a_display_name(client_factory, upload, cxr_png, tmp_path):
    with client_factory() as client:
        r = upload(client, ("../../../../tmp/evil.png", cxr_png))
        assert r.status_code == 201
        assert r.json()["images"][0]["filename"] == "image 1"
        assert not (tmp_path / "evil.png").exists()


def test_too_many_parts_is_refused_fast(client_factory, cxr_png):
    with client_factory() as client:
        files = [("files", (f"{i}.png", b"x", "image/png")) for i in range(40)]
        r = client.post("/v1/studies", files=files)
        assert r.status_code == 400
        big_field = {"indication": "x" * (64 * 1024)}
        r = client.post("/v1/studies", files=[("files", ("a.png", cxr_png, "image/png"))],
                        data=big_field)
        assert r.status_code in (400, 413)


def test_interpretation_not_ready_is_409(client_factory, upload, cxr_png):
    with client_factory() as client:
        sid = upload(client, ("a.png", cxr_png)).json()["id"]
        r = client.get(f"/v1/studies/{sid}/interpretation")
        assert r.status_code == 409 and "not ready" in r.json()["error"]["message"]
        r = client.post(f"/v1/studies/{sid}/messages", json={"content": "Effusion?"})
        assert r.status_code == 400


def test_healthz_metrics_and_openapi(client_factory, upload, cxr_png):
    with client_factory() as client:
        upload(client, ("a.png", cxr_png))
        health = client.get("/healthz").json()
        assert health["status"] == "ok" and health["demo"] is True
        assert health["queued_jobs"] == 1 and health["store"] == "sqlite"
        metrics = client.get("/metrics").text
        assert "medlens_uploads_total" in metrics and "medlens_jobs_queued 1.0" in metrics
        spec = client.get("/openapi.json").json()
        for path in ("/v1/studies", "/v1/studies/{study_id}", "/v1/studies/{study_id}/messages",
                     "/v1/studies/{study_id}/interpretation", "/v1/jobs/{job_id}/events",
                     "/v1/chat/completions", "/healthz", "/metrics"):
            assert path in spec["paths"], path
        docs = client.get("/docs")
        assert docs.status_code == 200 and "/v1/chat/completions" in docs.text


def test_rate_limit_is_429(client_factory):
    with client_factory(rate_limit_per_minute=3) as client:
        codes = [client.get("/v1/studies").status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = client.get("/v1/studies")
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["code"] == "rate_limited"


def test_wrong_kind_of_image_is_refused_with_a_reason(client_factory, upload, dicom_dir):
    with client_factory() as client:
        r = upload(client, ("CT_small.dcm", (dicom_dir / "CT_small.dcm").read_bytes()))
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "image_refused"
        assert "CT" in r.json()["error"]["message"]
        assert client.get("/v1/studies").json()["studies"] == []


def test_real_dicom_chest_xray_is_accepted_and_renders(client_factory, upload, dicom_dir):
    with client_factory() as client:
        r = upload(client, ("RG1_J2KI.dcm", (dicom_dir / "RG1_J2KI.dcm").read_bytes()))
        assert r.status_code == 201, r.text
        image = r.json()["images"][0]
        assert image["format"] == "dicom"
        png = client.get(image["url"])
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")


def test_page_explains_how_to_get_weights_when_none_are_configured(client_factory):
    with client_factory(demo=False, generator="google/medgemma-4b-it",
                        encoder="google/medsiglip-448") as client:
        html = client.get("/").text
        assert "Health AI Developer Foundations" in html and "hf auth login" in html
        assert "medlens models pull google/medgemma-4b-it" in html
        assert "DEMO: test model" not in html
        assert client.get("/healthz").json()["models_ready"] is False


def test_demo_page_shows_banner_and_disclaimer(client_factory):
    with client_factory() as client:
        html = client.get("/").text
        assert "DEMO: test model, output is meaningless" in html
        assert DISCLAIMER in html
        assert "Health AI Developer Foundations" not in html


def test_full_queue_refuses_new_work(client_factory, upload, cxr_png, cxr_png_2, monkeypatch):
    from medlens.server.services import studies

    monkeypatch.setattr(studies, "MAX_QUEUED_JOBS", 1)
    with client_factory() as client:
        assert upload(client, ("a.png", cxr_png)).status_code == 201
        data = client.app.state.medlens.store.list_jobs()
        assert len(data) == 1
        # another real chest X-ray: a synthetic pattern would be refused by the gate (422)
        other = client.post("/v1/studies", files=[("files", ("c.png", cxr_png_2, "image/png"))])
        assert other.status_code == 429 and other.json()["error"]["code"] == "queue_full"
        assert len(client.get("/v1/studies").json()["studies"]) == 1  # nothing half-made


def test_refused_study_page_explains_and_takes_no_followups(client_factory, upload, cxr_png):
    from medlens.tasks.interpret.result import GateRecord, Interpretation, Provenance

    with client_factory() as client:
        created = upload(client, ("a.png", cxr_png)).json()
        refused = Interpretation(
            study_id=created["id"], status="refused",
            gate=[GateRecord(image_index=0, source_name="a.png", accepted=False,
                             reason="looks like a knee radiograph")],
            provenance=Provenance(medlens_version="0.1.0", created_at="2026-11-28T05:00:00Z"))
        client.app.state.medlens.store.save_interpretation(
            created["id"], created["job"]["id"], refused)
        html = client.get(f"/studies/{created['id']}").text
        assert 'data-testid="refused"' in html and "looks like a knee radiograph" in html
        assert 'id="followup-form"' not in html
        client.cookies.clear()
        r = client.post(f"/v1/studies/{created['id']}/messages", json={"content": "Effusion?"})
        assert r.status_code == 400 and "refused" in r.json()["error"]["message"]


def test_upload_without_weights_is_503_with_instructions(client_factory, upload, cxr_png):
    with client_factory(run_jobs=True, demo=False, generator="google/medgemma-4b-it",
                        encoder="google/medsiglip-448") as client:
        r = upload(client, ("a.png", cxr_png))
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "model_not_available"
        assert "hf auth login" in r.json()["error"]["message"]
        assert client.get("/v1/studies").json()["studies"] == []

"""Demo mode stays apart from real use (issue 23): demo studies never reach a real-mode
server's History, API or worklist, even on the same data folder; every demo page says DEMO."""

from __future__ import annotations

from pathlib import Path

BANNER = 'data-testid="demo-banner"'


def test_demo_study_is_absent_from_a_real_server_on_the_same_folder(
    client_factory, upload, cxr_png, cxr_png_2, tmp_path: Path
):
    shared = tmp_path / "shared"
    with client_factory(data_dir=shared) as demo:
        made = upload(demo, ("a.png", cxr_png)).json()
        assert made["context"]["demo"] is True
        demo_id, demo_job = made["id"], made["job"]["id"]
    with client_factory(data_dir=shared, demo=False) as real:
        real_id = upload(real, ("b.png", cxr_png_2)).json()["id"]
        listed = [s["id"] for s in real.get("/v1/studies").json()["studies"]]
        assert listed == [real_id]
        # the page of one skips the newer demo study instead of coming back empty
        assert [s["id"] for s in real.get("/v1/studies?limit=1").json()["studies"]] == [real_id]
        for url in (f"/v1/studies/{demo_id}", f"/v1/jobs/{demo_job}",
                    f"/v1/studies/{demo_id}/interpretation", f"/studies/{demo_id}"):
            assert real.get(url).status_code == 404, url
        assert demo_id not in real.get("/").text
        assert demo_id not in real.get("/worklist").text
        assert real.get(f"/studies/{real_id}").status_code == 200
    with client_factory(data_dir=shared) as demo:  # the demo server still sees its own
        assert demo.get(f"/v1/studies/{demo_id}").status_code == 200


def test_every_demo_page_carries_the_banner_and_no_real_page_does(
    client_factory, upload, cxr_png
):
    with client_factory() as demo:
        study = upload(demo, ("a.png", cxr_png)).json()["id"]
        for url in ("/", f"/studies/{study}", "/worklist", "/studies/nope"):
            assert BANNER in demo.get(url).text, url
    with client_factory(demo=False) as real:
        study = upload(real, ("a.png", cxr_png)).json()["id"]
        for url in ("/", f"/studies/{study}", "/worklist"):
            assert BANNER not in real.get(url).text, url


# --- the demo generator: instant, labelled, and silent to every clinical check ---------------
LABEL = "DEMO OUTPUT — test model, not a report"


def _wait(client, job_id: str) -> dict:
    import time

    for _ in range(600):
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def test_demo_script_is_labelled_and_reads_as_nothing_clinical():
    from medlens.models.backends.scripted import KINDS, load_script
    from medlens.tasks.interpret.generation import parse_text
    from medlens.tasks.interpret.labeler import label_report
    from medlens.tasks.interpret.urgency import assess_urgency

    script = load_script("demo")
    for kind in KINDS:
        text = script[kind]
        assert text.startswith(LABEL), kind
        warnings: list[str] = []
        parse_text(text, "cxr", warnings)  # the "not a chest X-ray" detector
        assert warnings == [], kind
        mentions = label_report(text)
        assert mentions == {}, (kind, mentions)
        urgency = assess_urgency(mentions, text)
        assert urgency.level == "routine" and urgency.reasons == [], kind


def test_demo_mode_runs_the_demo_generator_end_to_end(
    client_factory, upload, tiny_test_models, cxr_png, cxr_png_2
):
    # a real generator configured + demo on: the demo generator answers instead
    with client_factory(run_jobs=True, generator="google/medgemma-4b-it",
                        max_new_tokens=300) as client:
        first = upload(client, ("a.png", cxr_png)).json()
        assert _wait(client, first["job"]["id"])["status"] == "done"
        second = upload(client, ("b.png", cxr_png_2), ground="true", language="fr",
                        prior_study_id=first["id"], prior_date="2020-03-01").json()
        assert _wait(client, second["job"]["id"])["status"] == "done"
        for study in (first, second):
            interp = client.get(study["interpretation_url"]).json()
            assert interp["provenance"]["generator"]["model_id"] == "medlens/demo"
            report = interp["report"]
            assert report["raw_text"].startswith(LABEL)
            assert report["findings"].startswith("DEMO OUTPUT")
            assert report["impression"].startswith("DEMO OUTPUT")
            # asked to ground, it says there is nothing to locate; no other warning
            assert set(interp["warnings"]) <= {"Grounding: the report names no finding to locate."}
            assert interp["urgency"]["level"] == "routine" and interp["urgency"]["reasons"] == []
            assert interp["cross_check"]["assertions"] == []
            assert interp["test_model_label"]
        assert client.get(first["interpretation_url"]).json()["warnings"] == []
        assert interp["comparison"]["changes"] == []
        assert interp["comparison"]["sentence"].startswith("DEMO OUTPUT")
        assert interp["comparison"]["warnings"] == []


def test_job_json_carries_the_stage_estimate_only_with_history(client_factory, upload, cxr_png):
    from medlens.jobs.estimates import record

    with client_factory() as client:
        made = upload(client, ("a.png", cxr_png)).json()
        state = client.app.state.medlens
        job = state.store.claim_job("w1")
        assert job is not None and job.id == made["job"]["id"]
        state.store.update_job(job.id, progress=0.06, stage="Loading models (the first run "
                               "takes longer)", worker_id="w1")
        url = f"/v1/jobs/{job.id}"
        shown = client.get(url).json()
        assert shown["eta_s"] is None and shown["estimate"] is None
        for seconds in (40.0, 52.0, 44.0):
            record(state.settings.data_path, {"Loading models": seconds})
        shown = client.get(url).json()
        assert shown["eta_s"] == 44.0
        assert shown["estimate"] == "about 44 s, from 3 earlier runs on this machine"
        assert client.get(f"/v1/studies/{made['id']}").json()["job"]["eta_s"] == 44.0

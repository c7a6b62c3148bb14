"""The real pipeline in demo mode with the tiny test models: upload → job → SSE →
interpretation (JSON + FHIR) → follow-up → OpenAI-compatible chat."""

from __future__ import annotations

import base64
import json

import pytest

from medlens.disclaimer import DISCLAIMER, TEST_MODEL_LABEL
from medlens.tasks.interpret.result import Interpretation


def read_events(client, url: str, limit: int = 5000) -> list[tuple[str, dict]]:
    events: list[tuple[str, dict]] = []
    with client.stream("GET", url) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event:
                events.append((event, json.loads(line[6:])))
                if event in ("done", "failed") or len(events) >= limit:
                    break
    return events


def _attachment_text(data: bytes | str) -> str:
    # fhir.resources decodes base64Binary to bytes; older versions keep the base64 text.
    raw = data if isinstance(data, bytes) else base64.b64decode(data)
    return raw.decode()


@pytest.fixture
def live(client_factory, tiny_test_models):
    with client_factory(run_jobs=True) as client:
        yield client


def test_upload_to_report_with_events_fhir_and_followup(live, upload, cxr_png):
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport

    created = upload(live, ("chest.png", cxr_png), indication="cough", language="en").json()
    events = read_events(live, created["job"]["events_url"])
    kinds = [e for e, _ in events]
    assert kinds[-1] == "done", events[-3:]
    assert "progress" in kinds
    stages = {d.get("stage") for e, d in events if e == "progress"}
    assert len(stages) >= 3  # several pipeline stages were reported

    r = live.get(created["interpretation_url"])
    assert r.status_code == 200
    interp = Interpretation.model_validate(r.json())
    assert interp.study_id == created["id"]
    assert interp.disclaimer == DISCLAIMER and interp.requires_verification
    assert interp.test_model_label == TEST_MODEL_LABEL
    assert interp.provenance.generator.is_test

    fhir = live.get(created["interpretation_url"], headers={"Accept": "application/fhir+json"})
    assert fhir.headers["content-type"].startswith("application/fhir+json")
    report = DiagnosticReport.model_validate(fhir.json())
    assert report.status == "preliminary"
    assert DISCLAIMER in _attachment_text(report.presentedForm[0].data)
    n_scores = sum(len(b.scores) for b in interp.finding_scores)
    assert len(report.result or []) == n_scores + (1 if interp.urgency else 0)

    page = live.get(f"/studies/{created['id']}").text
    assert 'data-testid="report"' in page or 'data-testid="refused"' in page
    assert DISCLAIMER in page and "DEMO: test model, output is meaningless" in page
    history = live.get("/").text
    if interp.urgency is not None:
        assert f"badge-urgency-{interp.urgency.level}" in history
    live.cookies.clear()  # act as an API client again (a page session would need CSRF)

    if interp.status != "complete":
        pytest.skip("the tiny encoder's gate refused the image; follow-up needs a report")
    asked = live.post(f"/v1/studies/{created['id']}/messages",
                      json={"content": "Is there a pleural effusion?"})
    assert asked.status_code == 202, asked.text
    events = read_events(live, asked.json()["job"]["events_url"])
    assert events[-1][0] == "done", events[-3:]
    messages = live.get(f"/v1/studies/{created['id']}/messages").json()
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["content"] == events[-1][1]["result"]["answer"]
    audit = {(e.action, e.outcome) for e in live.app.state.medlens.store.list_audit(limit=100)}
    assert {("upload", "ok"), ("view", "ok"), ("export", "ok"), ("followup", "ok")} <= audit


def test_events_replay_for_a_finished_job(live, upload, cxr_png):
    created = upload(live, ("chest.png", cxr_png)).json()
    first = read_events(live, created["job"]["events_url"])
    again = read_events(live, created["job"]["events_url"])
    assert first[-1][0] == again[-1][0] == "done"


def test_chat_completions_text_image_and_stream(live, cxr_png):
    data_url = "data:image/png;base64," + base64.b64encode(cxr_png).decode()
    body = {"model": "medgemma", "max_tokens": 8, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Describe this X-ray."},
        {"type": "image_url", "image_url": {"url": data_url}}]}]}
    models = live.get("/v1/models").json()
    assert models["data"][0]["id"] == "medlens/test-medgemma"
    r = live.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["object"] == "chat.completion" and out["disclaimer"] == DISCLAIMER
    assert out["choices"][0]["message"]["role"] == "assistant"
    assert out["usage"]["completion_tokens"] >= 1

    chunks, done = [], False
    with live.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as s:
        assert s.status_code == 200
        for line in s.iter_lines():
            if line == "data: [DONE]":
                done = True
                break
            if line.startswith("data: "):
                chunks.append(json.loads(line[6:]))
    assert done and chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)

    bad = live.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/x.png"}}]}]})
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_request_error"
    zip_url = "data:image/png;base64," + base64.b64encode(b"PK\x03\x04" + b"0" * 64).decode()
    bad = live.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": zip_url}}]}]})
    assert bad.status_code == 415 and "message" in bad.json()["error"]

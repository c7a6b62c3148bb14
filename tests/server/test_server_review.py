"""Radiologist review over the API: versions, sign-off, addenda, diff, roles, exports.

Real users (store users with tokens, bearer auth): a radiologist and a clinician of the
group that shares the study, and a radiologist of another group who must get 404."""

from __future__ import annotations

import io

import pytest
from fhir.resources.R4B.diagnosticreport import DiagnosticReport

from medlens.disclaimer import DISCLAIMER
from medlens.store.review import sha256_of, signed_document

from .review_helpers import make_study, make_user


@pytest.fixture
def env(client_factory):
    with client_factory(run_jobs=False) as client:
        store = client.app.state.medlens.store
        users = {
            "rad": make_user(store, "Dr Rad", "radiologist", ("chest",)),
            "clin": make_user(store, "Dr Clin", "clinician", ("chest",)),
            "other": make_user(store, "Dr Other", "radiologist", ("neuro",)),
        }
        sid = make_study(store, b"study-one", users["clin"], "chest")
        yield client, store, users, sid


def _edit(base: int, findings: str = "No pleural effusion. Heart size normal.") -> dict:
    return {"findings": findings, "impression": "Normal chest.", "base_version": base,
            "finding_reviews": [{"label": "Pleural Effusion", "verdict": "disagree",
                                 "comment": "blunting is positional"},
                                {"label": "Cardiomegaly", "verdict": "agree"}]}


def _fhir(client, sid, headers) -> dict:
    res = client.get(f"/v1/studies/{sid}/interpretation", params={"format": "fhir"},
                     headers=headers)
    assert res.status_code == 200, res.text
    DiagnosticReport.model_validate(res.json())
    return res.json()


def test_versions_sign_addendum_and_exports(env):
    client, store, users, sid = env
    rad = users["rad"].headers
    url = f"/v1/studies/{sid}/report"
    state = client.get(url, headers=rad).json()
    assert state["status"] == "draft" and state["can_edit"] and state["versions"] == []
    assert state["ai_draft"]["impression"] == "Right pleural effusion."
    assert [f["label"] for f in state["ai_findings"]] == ["Pleural Effusion", "Cardiomegaly"]
    assert _fhir(client, sid, rad)["status"] == "preliminary"

    v1 = client.put(url, json=_edit(0), headers=rad)
    assert v1.status_code == 201 and v1.json()["version"] == 1
    assert v1.json()["author_name"] == "Dr Rad" and v1.json()["author_id"] == users["rad"].id
    stale = client.put(url, json=_edit(0, "overwrite?"), headers=rad)
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "conflict"
    assert client.put(url, json=_edit(1, "No effusion."), headers=rad).json()["version"] == 2

    diff = client.get(f"{url}/diff", headers=rad).json()
    findings = diff["sections"][0]
    assert diff["version"] == 2 and findings["changed"]
    assert "".join(o["text"] for o in findings["ops"] if o["op"] != "insert") == \
        "Small right pleural effusion. Heart size normal."
    assert "".join(o["text"] for o in findings["ops"] if o["op"] != "delete") == "No effusion."
    assert "-Impression: Right pleural effusion." in diff["unified"]
    assert "+Impression: Normal chest." in diff["unified"]

    assert client.post(f"{url}/sign", json={"version": 1}, headers=rad).status_code == 409
    signed = client.post(f"{url}/sign", json={"version": 2}, headers=rad)
    assert signed.status_code == 201, signed.text
    sig = signed.json()
    content = store.list_report_versions(sid)[1].content
    assert sig["sha256"] == sha256_of(signed_document(sid, 2, content, users["rad"].id,
                                                      "Dr Rad", sig["signed_at"]))
    again = client.post(f"{url}/sign", headers=rad)
    assert again.status_code == 409 and "already signed" in again.json()["error"]["message"]
    assert client.put(url, json=_edit(2), headers=rad).status_code == 409

    final = _fhir(client, sid, rad)
    assert final["status"] == "final" and final["conclusion"] == "Normal chest."
    assert final["resultsInterpreter"][0]["display"] == "Dr Rad"

    added = client.post(f"{url}/addenda", json={"text": "CT advised."}, headers=rad)
    assert added.status_code == 201 and added.json()["seq"] == 1
    state = client.get(url, headers=rad).json()
    assert state["status"] == "amended" and state["signature"]["sha256"] == sig["sha256"]
    assert [a["text"] for a in state["addenda"]] == ["CT advised."]
    assert _fhir(client, sid, rad)["status"] == "appended"

    events = [(e.action, e.outcome, e.detail) for e in store.list_audit(limit=50, study_id=sid)]
    actions = [(a, o) for a, o, _ in events]
    for expected in [("report_save", "ok"), ("report_save", "refused"), ("report_sign", "ok"),
                     ("report_sign", "refused"), ("report_addendum", "ok")]:
        assert expected in actions
    assert any(a == "report_sign" and d.get("sha256") == sig["sha256"] for a, _, d in events)


def test_only_radiologists_write_and_others_get_404(env):
    client, store, users, sid = env
    url = f"/v1/studies/{sid}/report"
    clin, other = users["clin"].headers, users["other"].headers
    seen = client.get(url, headers=clin).json()
    assert seen["can_edit"] is False and seen["status"] == "draft"
    for method, path, body in [("PUT", url, _edit(0)), ("POST", f"{url}/sign", {}),
                               ("POST", f"{url}/addenda", {"text": "x"})]:
        res = client.request(method, path, json=body, headers=clin)
        assert res.status_code == 403 and res.json()["error"]["code"] == "forbidden", path
        assert client.request(method, path, json=body, headers=other).status_code == 404
    for path in (url, f"{url}/diff", f"/v1/studies/{sid}/report.pdf"):
        assert client.get(path, headers=other).status_code == 404, path
        assert client.get(path.replace(sid, "0" * 32), headers=users["rad"].headers
                          ).status_code == 404
    denied = [e for e in store.list_audit(limit=50, study_id=sid) if e.outcome == "denied"]
    assert {e.action for e in denied} == {"report_save", "report_sign", "report_addendum"}
    assert store.list_report_versions(sid) == []


def test_no_draft_no_review(env):
    client, store, users, _sid = env
    pending = make_study(store, b"pending", users["clin"], "chest", with_draft=False)
    res = client.get(f"/v1/studies/{pending}/report", headers=users["rad"].headers)
    assert res.status_code == 409 and res.json()["error"]["code"] == "not_ready"
    res = client.put(f"/v1/studies/{pending}/report", json=_edit(0),
                     headers=users["rad"].headers)
    assert res.status_code == 409


def _pdf_pages(data: bytes) -> list[str]:
    from pypdf import PdfReader

    return [" ".join(p.extract_text().split()) for p in PdfReader(io.BytesIO(data)).pages]


def test_pdf_export_carries_the_state(env):
    client, store, users, sid = env
    rad = users["rad"].headers
    pdf = client.get(f"/v1/studies/{sid}/report.pdf", headers=rad)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    (page,) = _pdf_pages(pdf.content)
    assert "DRAFT — NOT SIGNED" in page and DISCLAIMER in page
    assert "Right pleural effusion." in page

    long = " ".join(["No pleural effusion; lungs clear."] * 400)
    client.put(f"/v1/studies/{sid}/report", json=_edit(0, long), headers=rad)
    sig = client.post(f"/v1/studies/{sid}/report/sign", headers=rad).json()
    client.post(f"/v1/studies/{sid}/report/addenda", json={"text": "CT advised."}, headers=rad)
    pages = _pdf_pages(client.get(f"/v1/studies/{sid}/report.pdf", headers=rad).content)
    assert len(pages) >= 2
    assert all(DISCLAIMER in p for p in pages)  # the disclaimer is on every page
    text = " ".join(pages)
    assert "DRAFT" not in text and "FINAL — SIGNED" in text
    assert f"Signed by Dr Rad on {sig['signed_at']}" in text and sig["sha256"] in text
    assert "Addendum 1 — Dr Rad" in text and "CT advised." in text
    assert any(e.action == "export" and e.detail.get("format") == "pdf"
               for e in store.list_audit(limit=20, study_id=sid))

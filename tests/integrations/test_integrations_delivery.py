"""FHIR Bundle and result delivery: R4B-valid, POSTed to a recording HTTP server on
loopback, retried and kept pending while the server is down, delivered once it is up."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pydicom
import pytest

from medlens.config import Settings
from medlens.disclaimer import DISCLAIMER
from medlens.integrations.delivery import deliver_study
from medlens.integrations.fhir_push import bundle, validate
from medlens.integrations.identity import capture_identity
from medlens.store import open_store
from medlens.store.base import NewImage

from .results_helpers import RG1, interpretation


class _Recorder(BaseHTTPRequestHandler):
    bundles: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).bundles.append(body)
        answer = {"resourceType": "Bundle", "type": "transaction-response",
                  "entry": [{"response": {"status": "201 Created"}} for _ in body["entry"]]}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def identity() -> dict:
    ident = capture_identity(pydicom.dcmread(RG1, stop_before_pixels=True))
    ident["instances"][0]["position"] = 1
    return ident


@pytest.fixture
def integrated(tmp_path: Path, identity: dict) -> Iterator[tuple]:
    store = open_store(f"sqlite:///{tmp_path / 'd.db'}", images_dir=tmp_path / "img")
    sha = hashlib.sha256(b"x").hexdigest()
    study, _ = store.create_study([NewImage(sha, sha, "dicom", "x.dcm", data=b"x")], {})
    store.put_study_identity(study.id, identity)
    store.save_interpretation(study.id, "job", interpretation(study.id))
    try:
        yield store, study.id
    finally:
        store.close()


def test_bundle_is_valid_r4b_with_references_and_codes(identity: dict):
    doc = bundle(interpretation(), identity)
    parsed = validate(doc)
    kinds = [e.resource.__resource_type__ for e in parsed.entry]
    assert kinds == ["Patient", "ImagingStudy", "Device", "Observation", "Observation",
                     "Observation", "DiagnosticReport", "Provenance"]  # fmt: skip
    by_kind = {e["resource"]["resourceType"]: e for e in doc["entry"]}
    study = by_kind["ImagingStudy"]["resource"]
    assert study["identifier"][0] == {"system": "urn:dicom:uid",
                                      "value": f"urn:oid:{identity['StudyInstanceUID']}"}
    assert study["identifier"][1]["value"] == identity["AccessionNumber"]
    report = by_kind["DiagnosticReport"]["resource"]
    assert report["status"] == "preliminary"
    assert report["category"][0]["coding"][0]["code"] == "RAD"
    assert report["imagingStudy"] == [{"reference": by_kind["ImagingStudy"]["fullUrl"]}]
    assert DISCLAIMER in report["conclusion"]
    assert {"system": "http://snomed.info/sct", "code": "60046008",
            "display": "Pleural effusion"} in report["conclusionCode"][0]["coding"]
    device_ref = {"reference": by_kind["Device"]["fullUrl"]}
    observations = [e["resource"] for e in doc["entry"] if e["resource"]["resourceType"]
                    == "Observation"]  # fmt: skip
    assert all(o["device"] == device_ref for o in observations)
    assert by_kind["Provenance"]["resource"]["agent"][0]["who"] == device_ref
    assert all(e["fullUrl"].startswith("urn:uuid:") for e in doc["entry"])
    assert bundle(interpretation(), identity) == doc  # same result, same Bundle


def test_fhir_down_stays_pending_then_delivered(integrated, tmp_path: Path):
    store, study_id = integrated
    port = _free_port()
    settings = Settings(data_dir=tmp_path, fhir_url=f"http://127.0.0.1:{port}/fhir")
    waits: list[float] = []
    outcome = deliver_study(store, settings, study_id, attempts=3, backoff_s=0.5,
                            sleep=waits.append)  # fmt: skip
    assert outcome.pending and "unreachable" in outcome.pending["fhir"]
    assert waits == [0.5, 1.0]  # doubling backoff between the three tries
    (row,) = store.list_deliveries(study_id=study_id)
    assert (row.status, row.attempts) == ("pending", 3)
    errors = [e for e in store.list_audit(study_id=study_id) if e.outcome == "error"]
    assert len(errors) == 3 and errors[0].action == "result.deliver.fhir"
    _Recorder.bundles = []
    server = _serve(port)
    try:
        outcome = deliver_study(store, settings, study_id, attempts=1)
    finally:
        server.shutdown()
        server.server_close()
    assert outcome.complete and outcome.delivered == ["fhir"]
    (row,) = store.list_deliveries(study_id=study_id)
    assert (row.status, row.attempts) == ("delivered", 4)
    (sent,) = _Recorder.bundles
    assert sent["type"] == "transaction"
    ok = [e for e in store.list_audit(study_id=study_id) if e.outcome == "ok"]
    assert ok and ok[-1].detail["where"] == settings.fhir_url
    # delivered targets are not sent again
    assert deliver_study(store, settings, study_id).delivered == ["fhir"]
    assert len(_Recorder.bundles) == 1


def test_nothing_configured_contacts_nothing(integrated, tmp_path: Path):
    store, study_id = integrated
    outcome = deliver_study(store, Settings(data_dir=tmp_path), study_id)
    assert outcome.complete and outcome.delivered == []
    assert store.list_deliveries(study_id=study_id) == []


def test_deliver_job_stays_pending_then_requeued_and_delivered(integrated, tmp_path: Path):
    from medlens.integrations.delivery import DeliveryPending
    from medlens.jobs.deliver import handle_deliver, queue_delivery, requeue_pending

    store, study_id = integrated
    port = _free_port()
    settings = Settings(data_dir=tmp_path, fhir_url=f"http://127.0.0.1:{port}/fhir")
    job = queue_delivery(store, settings, study_id, rounds=2, backoff_s=0.01)
    assert job is not None and job.kind == "deliver"
    stages: list[str] = []
    ctx = SimpleNamespace(store=store, settings=settings, wait_cancelled=lambda t: False,
                          progress=lambda f, stage: stages.append(stage))  # fmt: skip
    with pytest.raises(DeliveryPending, match="pending delivery to fhir"):
        handle_deliver(job, ctx)
    assert any(s.startswith("Result pending delivery (fhir:") for s in stages)
    store.fail_job(job.id, "gave up")
    assert requeue_pending(store) == [study_id]
    assert requeue_pending(store) == []  # one live job per study
    (again,) = [j for j in store.list_jobs(status="queued") if j.kind == "deliver"]
    _Recorder.bundles = []
    server = _serve(port)
    try:
        assert handle_deliver(again, ctx) == {"delivered": ["fhir"]}
    finally:
        server.shutdown()
        server.server_close()
    assert len(_Recorder.bundles) == 1
    # a study that is not integrated queues nothing
    sha = hashlib.sha256(b"y").hexdigest()
    local, _ = store.create_study([NewImage(sha, sha, "png", "y.png", data=b"y")], {})
    assert queue_delivery(store, settings, local.id) is None

"""`medlens listen` and the `/changes` poller against a real, private Orthanc on loopback.

Orthanc pushes RG1_J2KI (JPEG 2000 chest CR) with `POST /modalities/medlens/store`; the
poller finds studies stored while MedLens was not listening. Timings print with -s.
"""

from __future__ import annotations

import io
import time
from typing import Any

import pydicom
import pytest

from medlens.config import AutoInterpretRules
from medlens.integrations.autoingest import REFUSED_KIND, IngestOutcome
from medlens.integrations.listener import Listener
from medlens.integrations.orthanc_changes import SEQ_KEY, WAKE_KEY, ChangesPoller
from medlens.jobs import JobRunner
from medlens.jobs.handlers import HANDLERS

RULES = AutoInterpretRules(enabled=True, quiet_seconds=0.3)
CT_RULE = "Modality CT is not CR/DX"
J2K = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91")
TEST_MODELS = {"generator": "medlens/test-medgemma", "encoder": "medlens/test-medsiglip",
               "max_new_tokens": 24}  # fmt: skip


def wait_for(predicate: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def push(orthanc: Any, resource: str) -> None:
    r = orthanc.post(
        "/modalities/medlens/store", json={"Resources": [resource], "Synchronous": True}
    )
    assert r.status_code == 200, r.text


def stable(orthanc: Any, orthanc_study: str) -> bool:
    changes = orthanc.get("/changes", params={"limit": 1000}).json()["Changes"]
    return any(c["ChangeType"] == "StableStudy" and c["ID"] == orthanc_study for c in changes)


def test_orthanc_pushes_a_j2k_chest_twice_and_one_study_one_job_result(
    orthanc, store, tmp_path, dicom_dir
):
    settings = orthanc.settings(tmp_path / "data", auto_interpret=RULES, **TEST_MODELS)
    study = orthanc.upload(dicom_dir / "RG1_J2KI.dcm")["ParentStudy"]
    outcomes: list[IngestOutcome] = []
    # The real interpret handler with the tiny test models, run in this thread.
    runner = JobRunner(store, {"interpret": HANDLERS["interpret"]}, settings=settings)
    lis = Listener(store, settings, tick=0.05, on_outcome=outcomes.append)
    lis.start()
    try:
        start = time.monotonic()
        push(orthanc, study)
        wait_for(lambda: outcomes)
        queued = time.monotonic() - start
        assert runner.run_once()
        print(f"\nlisten: Orthanc C-STORE → job queued in {queued:.2f} s, "
              f"→ interpretation stored in {time.monotonic() - start:.2f} s")  # fmt: skip
        push(orthanc, study)  # the same study again
        wait_for(lambda: len(outcomes) == 2)
    finally:
        lis.stop()
    assert [o.status for o in outcomes] == ["queued", "duplicate"]
    assert not runner.run_once()  # nothing queued by the second C-STORE
    [one] = store.list_studies()
    [job] = store.list_jobs()
    assert (job.kind, job.status, job.study_id) == ("interpret", "done", one.id)
    interp = store.get_interpretation(one.id)
    assert interp is not None and interp.study_id == one.id and interp.status == "complete"
    original = pydicom.dcmread(dicom_dir / "RG1_J2KI.dcm", stop_before_pixels=True)
    identity = store.get_study_identity(one.id)
    assert identity["PatientID"] == original.PatientID
    assert identity["AccessionNumber"] == original.AccessionNumber
    # Received as stored (JPEG 2000, not transcoded), kept de-identified.
    kept = pydicom.dcmread(io.BytesIO(store.blobs.read(one.images[0].sha256)))
    assert kept.file_meta.TransferSyntaxUID in J2K
    assert kept.PatientID != original.PatientID
    assert kept.StudyInstanceUID != original.StudyInstanceUID


def test_orthanc_pushes_a_ct_and_it_is_not_interpreted(orthanc, store, tmp_path, dicom_dir):
    settings = orthanc.settings(tmp_path / "data", auto_interpret=RULES)
    study = orthanc.upload(dicom_dir / "CT_small.dcm")["ParentStudy"]
    outcomes: list[IngestOutcome] = []
    lis = Listener(store, settings, tick=0.05, on_outcome=outcomes.append)
    lis.start()
    try:
        push(orthanc, study)
        wait_for(lambda: outcomes)
    finally:
        lis.stop()
    assert (outcomes[0].status, outcomes[0].reasons) == ("skipped", ["Modality CT is not CR/DX"])
    assert store.list_studies() == []
    [job] = store.list_jobs()  # not interpreted: the reason is the error of a failed job
    assert (job.kind, job.status) == (REFUSED_KIND, "failed")
    assert job.error == "Not interpreted (skipped): Modality CT is not CR/DX"


@pytest.fixture
def pacs(orthanc_factory):
    """An own Orthanc (a clean /changes feed) whose studies are stable after 1 s."""
    return orthanc_factory({"StableAge": 1})


def test_the_poller_catches_up_on_what_arrived_while_medlens_was_down(
    pacs, store, tmp_path, dicom_dir
):
    settings = pacs.settings(tmp_path / "data", auto_interpret=RULES, orthanc_url=pacs.url)
    first = ChangesPoller(store, settings).poll_once()  # first run: from now on
    assert first.outcomes == [] and store.get_integration_state(SEQ_KEY) == str(first.seq)
    # MedLens is down: a chest and a CT arrive and become stable.
    chest = pacs.upload(dicom_dir / "RG1_J2KI.dcm")["ParentStudy"]
    ct = pacs.upload(dicom_dir / "CT_small.dcm")["ParentStudy"]
    wait_for(lambda: stable(pacs, chest) and stable(pacs, ct))
    start = time.monotonic()
    report = ChangesPoller(store, settings).poll_once()  # the restart
    print(f"\n/changes catch-up: pull + intake in {time.monotonic() - start:.2f} s")
    by_status = {o.status: o for o in report.outcomes}
    assert sorted(by_status) == ["queued", "skipped"]
    assert by_status["skipped"].reasons == [CT_RULE]
    assert len(store.list_studies()) == 1 and len(interpret_jobs(store)) == 1
    refused = store.get_job(str(by_status["skipped"].job_id))
    assert refused is not None and refused.error == f"Not interpreted (skipped): {CT_RULE}"
    identity = store.get_study_identity(by_status["queued"].study_id)
    assert identity["PatientID"] == "9RG1"
    last = pacs.get("/changes", params={"last": ""}).json()["Last"]
    assert report.seq == last and store.get_integration_state(SEQ_KEY) == str(last)
    # Resumes from the persisted Seq: nothing handled twice.
    again = ChangesPoller(store, settings).poll_once()
    assert again.outcomes == [] and again.seq == last
    # A crash before the Seq was saved replays the changes: still one study, one job.
    store.set_integration_state(SEQ_KEY, str(first.seq))
    replay = ChangesPoller(store, settings).poll_once()
    assert sorted(o.status for o in replay.outcomes) == ["duplicate", "skipped"]
    assert len(store.list_studies()) == 1 and len(interpret_jobs(store)) == 1


def interpret_jobs(store: Any) -> list[Any]:
    return [j for j in store.list_jobs() if j.kind == "interpret"]


def test_the_poller_waits_when_orthanc_is_down_and_keeps_its_seq(pacs, store, tmp_path, dicom_dir):
    from medlens.integrations.errors import PacsUnavailable

    settings = pacs.settings(tmp_path / "data", auto_interpret=RULES, orthanc_url=pacs.url)
    seq = ChangesPoller(store, settings).poll_once().seq
    pacs.stop()
    with pytest.raises(PacsUnavailable):
        ChangesPoller(store, settings).poll_once()
    assert store.get_integration_state(SEQ_KEY) == str(seq)


def test_the_hook_only_wakes_the_poller(pacs, tmp_path, dicom_dir):
    from fastapi.testclient import TestClient

    from medlens.server.app import create_app
    from medlens.store import open_store

    token = "h" * 40
    settings = pacs.settings(
        tmp_path / "data", auto_interpret=RULES, orthanc_url=pacs.url,
        hook_token=token, api_tokens=["a" * 40], orthanc_poll_seconds=3600,
    )  # fmt: skip
    store = open_store(settings)
    outcomes: list[IngestOutcome] = []
    poller = ChangesPoller(store, settings, tick=0.05, on_outcome=outcomes.append)
    poller.poll_once()  # first run done: the next look is in an hour, unless woken
    poller.start()
    app = create_app(settings, run_jobs=False)
    try:
        with TestClient(app, base_url="http://127.0.0.1") as client:
            assert client.post("/v1/hooks/orthanc").status_code == 401
            wrong = {"Authorization": "Bearer " + "x" * 40}
            assert client.post("/v1/hooks/orthanc", headers=wrong).status_code == 403
            study = pacs.upload(dicom_dir / "RG1_J2KI.dcm")["ParentStudy"]
            wait_for(lambda: stable(pacs, study))
            time.sleep(0.3)
            assert outcomes == []  # not polled by itself
            # What the hook says is not trusted: a made-up study is not looked at.
            r = client.post(
                "/v1/hooks/orthanc",
                headers={"Authorization": f"Bearer {token}"},
                json={"ID": "not-a-study", "Path": "/studies/not-a-study"},
            )
            assert r.status_code == 202 and store.get_integration_state(WAKE_KEY)
            wait_for(lambda: outcomes, timeout=20)
    finally:
        poller.stop()
        store.close()
    assert [o.status for o in outcomes] == ["queued"]
    assert len(store_studies(settings)) == 1


def store_studies(settings: Any) -> list[Any]:
    from medlens.store import open_store

    s = open_store(settings)
    try:
        return s.list_studies()
    finally:
        s.close()


def test_listen_refuses_non_loopback_orthanc_source(orthanc, store, tmp_path, dicom_dir):
    """Orthanc's modality entry for MedLens points at the listener; a node configured for
    another host cannot use the same AE title (checked with Orthanc as the caller)."""
    settings = orthanc.settings(tmp_path / "data", auto_interpret=RULES)
    node = settings.dicom_nodes[0].model_copy(update={"host": "127.0.0.2"})
    settings = settings.model_copy(update={"dicom_nodes": [node]})
    study = orthanc.upload(dicom_dir / "RG1_J2KI.dcm")["ParentStudy"]
    lis = Listener(store, settings, tick=0.05)
    lis.start()
    try:
        r = orthanc.post("/modalities/medlens/store",
                         json={"Resources": [study], "Synchronous": True})  # fmt: skip
    finally:
        lis.stop()
    assert r.status_code != 200  # Orthanc's C-STORE was refused at association
    assert store.list_studies() == []
    assert any(e.action == "integration.listen.rejected" for e in store.list_audit())

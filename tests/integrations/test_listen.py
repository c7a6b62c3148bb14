"""`medlens listen` without a PACS: a pynetdicom SCU plays the sending node.

What Orthanc itself does to the listener is in test_listen_orthanc.py; here the edges:
who may associate, duplicates, rules, the gate, the spool surviving a crash.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from medlens.config import AutoInterpretRules, DicomNode, Settings
from medlens.integrations.autoingest import AUDIT_ACTION, REFUSED_KIND, IngestOutcome
from medlens.integrations.listener import Listener, spool_dir
from medlens.integrations.rules import AutoRule
from medlens.store import open_store

SENDER = "ORTHANC"


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def listen_settings(tmp_path: Path, **rules: Any) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        dicom_nodes=[DicomNode(name="pacs", ae_title=SENDER, host="127.0.0.1", port=4242)],
        auto_interpret=AutoInterpretRules(enabled=True, quiet_seconds=0.3, **rules),
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return listen_settings(tmp_path)


@pytest.fixture
def store(settings: Settings) -> Iterator[Any]:
    s = open_store(settings)
    yield s
    s.close()


@pytest.fixture
def listener(store: Any, settings: Settings) -> Iterator[tuple[Listener, list[IngestOutcome]]]:
    outcomes: list[IngestOutcome] = []
    lis = Listener(store, settings, port=0, tick=0.05, on_outcome=outcomes.append)
    lis.start()
    yield lis, outcomes
    lis.stop()


def send(
    port: int, path: Path, *, calling: str = SENDER, bind: str | None = None, ds: Any = None
) -> int | None:
    """C-STORE one file, one presentation context for its own transfer syntax (status, or
    None when the association was rejected)."""
    from pynetdicom import AE

    ds = ds if ds is not None else pydicom.dcmread(path)
    ae = AE(ae_title=calling)
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    kwargs = {"bind_address": (bind, 0)} if bind else {}
    assoc = ae.associate("127.0.0.1", port, ae_title="MEDLENS", **kwargs)
    if not assoc.is_established:
        return None
    try:
        return int(assoc.send_c_store(ds).Status)
    finally:
        assoc.release()


def test_one_study_one_job_and_the_identity_kept_apart(listener, store, dicom_dir):
    lis, outcomes = listener
    rg1 = dicom_dir / "RG1_J2KI.dcm"
    assert send(lis.port, rg1) == 0x0000
    assert send(lis.port, rg1) == 0x0000  # a duplicate before the study is complete
    wait_for(lambda: outcomes)
    assert send(lis.port, rg1) == 0x0000  # the same study again, after it was taken in
    wait_for(lambda: len(outcomes) == 2)
    assert [o.status for o in outcomes] == ["queued", "duplicate"]
    assert outcomes[0].study_id == outcomes[1].study_id and outcomes[0].instances == 1
    studies, jobs = store.list_studies(), store.list_jobs()
    assert len(studies) == 1 and [(j.kind, j.status) for j in jobs] == [("interpret", "queued")]
    original = pydicom.dcmread(rg1, stop_before_pixels=True)
    identity = store.get_study_identity(studies[0].id)
    assert identity["PatientID"] == original.PatientID == "9RG1"
    assert identity["StudyInstanceUID"] == original.StudyInstanceUID
    assert identity["instances"][0]["SOPInstanceUID"] == original.SOPInstanceUID
    assert identity["instances"][0]["position"] == 1
    # The normal store holds the de-identified copy only.
    blob = store.blobs.read(studies[0].images[0].sha256)
    for value in (original.PatientID, str(original.PatientName), original.StudyInstanceUID):
        assert value.encode() not in blob
        assert value not in repr(studies[0])
    assert not list(spool_dir(lis.settings).rglob("*.dcm"))  # deleted once taken in
    events = [e for e in store.list_audit() if e.action == AUDIT_ACTION]
    assert sorted(e.detail["status"] for e in events) == ["duplicate", "queued"]
    assert "9RG1" not in repr(events)


def test_unknown_ae_title_and_wrong_host_are_rejected(listener, store, dicom_dir):
    lis, outcomes = listener
    rg1 = dicom_dir / "RG1_J2KI.dcm"
    assert send(lis.port, rg1, calling="INTRUDER") is None
    assert send(lis.port, rg1, bind="127.0.0.2") is None  # the right AE, another host
    refused = [e for e in store.list_audit() if e.action == "integration.listen.rejected"]
    assert {(e.detail["calling_ae"], e.detail["address"]) for e in refused} == {
        ("INTRUDER", "127.0.0.1"),
        (SENDER, "127.0.0.2"),
    }
    assert not spool_dir(lis.settings).exists() or not any(spool_dir(lis.settings).iterdir())
    assert store.list_studies() == [] and outcomes == []


def test_a_ct_is_received_but_not_interpreted_and_the_rule_says_why(listener, store, dicom_dir):
    lis, outcomes = listener
    assert send(lis.port, dicom_dir / "CT_small.dcm") == 0x0000
    wait_for(lambda: outcomes)
    assert outcomes[0].status == "skipped"
    assert outcomes[0].reasons == ["Modality CT is not CR/DX"]
    assert store.list_studies() == []
    [job] = store.list_jobs()  # the reason is in a failed job, nothing to run
    assert (job.kind, job.status, job.study_id) == (REFUSED_KIND, "failed", None)
    assert job.error == "Not interpreted (skipped): Modality CT is not CR/DX"
    assert outcomes[0].job_id == job.id and job.payload["reasons"] == outcomes[0].reasons
    event = next(e for e in store.list_audit() if e.action == AUDIT_ACTION)
    assert (event.outcome, event.detail["reasons"]) == ("skipped", ["Modality CT is not CR/DX"])
    assert event.detail["job_id"] == job.id
    assert not list(spool_dir(lis.settings).rglob("*"))


def test_what_passes_the_rules_still_meets_the_image_gate(listener, store, dicom_dir):
    lis, outcomes = listener
    ds = pydicom.dcmread(dicom_dir / "MR_small.dcm")
    ds.Modality, ds.BodyPartExamined = "DX", "CHEST"  # the header says chest X-ray...
    ds.PixelData = bytes(len(ds.PixelData))  # ...the pixels are blank
    assert send(lis.port, Path("MR_small.dcm"), ds=ds) == 0x0000
    wait_for(lambda: outcomes)
    assert outcomes[0].status == "refused"
    [reason] = outcomes[0].reasons
    assert "blank or near-constant image" in reason
    assert store.list_studies() == []
    [job] = store.list_jobs()
    assert (job.kind, job.status) == (REFUSED_KIND, "failed") and reason in str(job.error)
    event = next(e for e in store.list_audit() if e.action == AUDIT_ACTION)
    assert event.outcome == "refused" and event.detail["reasons"] == outcomes[0].reasons


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm"])
def test_ct_and_mr_meet_the_image_gate_when_no_rule_stops_them(tmp_path, dicom_dir, name):
    """With the header rules opened up, the image gate itself refuses CT and MR; its
    reason is the error of the study's failed job (and in the audit)."""
    from medlens.integrations.autoingest import ingest_study

    settings = listen_settings(tmp_path, modalities=[], body_parts=[])
    store = open_store(settings)
    try:
        out = ingest_study(store, settings, [(dicom_dir / name).read_bytes()], actor="test")
        assert out.status == "refused" and store.list_studies() == []
        [job] = store.list_jobs()
    finally:
        store.close()
    modality = pydicom.dcmread(dicom_dir / name, stop_before_pixels=True).Modality
    assert (job.kind, job.status, job.id) == (REFUSED_KIND, "failed", out.job_id)
    assert job.error.startswith("Not interpreted (refused): ") and modality in job.error
    print(f"\n{name}: {job.error}")


def test_every_transfer_syntax_is_accepted_one_context_each(listener):
    from pynetdicom import AE, ALL_TRANSFER_SYNTAXES
    from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation

    lis, _ = listener
    ae = AE(ae_title=SENDER)
    for syntax in ALL_TRANSFER_SYNTAXES[:40]:  # 128 contexts at most per association
        ae.add_requested_context(DigitalXRayImageStorageForPresentation, syntax)
    assoc = ae.associate("127.0.0.1", lis.port, ae_title="MEDLENS")
    try:
        accepted = {cx.transfer_syntax[0] for cx in assoc.accepted_contexts}
    finally:
        assoc.release()
    assert accepted == set(ALL_TRANSFER_SYNTAXES[:40])


def test_the_spool_survives_a_crash_before_ingest(store, settings, dicom_dir):
    slow = Listener(store, settings, port=0, quiet_seconds=3600)
    slow.start()
    try:
        assert send(slow.port, dicom_dir / "RG1_J2KI.dcm") == 0x0000
    finally:
        slow.stop()  # "crash": answered success, never ingested
    spooled = list(spool_dir(settings).rglob("*.dcm"))
    assert len(spooled) == 1 and store.list_studies() == []
    assert stat.S_IMODE(os.stat(spooled[0]).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(spool_dir(settings)).st_mode) == 0o700
    outcomes: list[IngestOutcome] = []
    again = Listener(store, settings, port=0, tick=0.05, on_outcome=outcomes.append)
    again.start()  # the next start finds it
    try:
        wait_for(lambda: outcomes)
    finally:
        again.stop()
    assert outcomes[0].status == "queued" and len(store.list_jobs()) == 1
    assert not list(spool_dir(settings).rglob("*.dcm"))


def test_rules_come_from_the_settings(tmp_path):
    rule = AutoRule.from_settings(listen_settings(tmp_path, modalities=["dx"], body_parts=[]))
    chest = {"Modality": "DX", "BodyPartExamined": "CHEST", "Rows": 8, "Columns": 8}
    assert rule.check(chest).accept
    assert rule.check({**chest, "BodyPartExamined": "KNEE"}).accept  # any body part
    assert rule.check({**chest, "Modality": "CR"}).reason == "Modality CR is not DX"
    assert rule.check({"Modality": "DX"}).reason == "DX instance without pixel data"
    assert rule.check({"Modality": "DX"}, need_pixels=False).accept
    strict = AutoRule.from_settings(listen_settings(tmp_path))
    assert strict.check({**chest, "BodyPartExamined": ""}).reason == (
        "BodyPartExamined missing is not CHEST"
    )
    off = AutoRule.from_settings(Settings(data_dir=tmp_path))
    assert not off.check(chest).accept and "off" in off.check(chest).reason

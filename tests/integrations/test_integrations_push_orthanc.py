"""Results back into the SAME study of a real (private, loopback) Orthanc: STOW-RS and
C-STORE, and a PACS that is down stays 'pending' until it is back. Timings printed (-s)."""

from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path

import pydicom
import pytest

from medlens.integrations import dicomweb
from medlens.integrations.delivery import deliver_study
from medlens.integrations.identity import capture_identity
from medlens.store.base import NewImage

from .results_helpers import interpretation

RG1 = "RG1_J2KI.dcm"


def _integrated(store, dicom_dir: Path) -> tuple[str, pydicom.Dataset]:
    header = pydicom.dcmread(dicom_dir / RG1, stop_before_pixels=True)
    identity = capture_identity(header)
    identity["instances"][0]["position"] = 1
    data = f"deid {time.monotonic_ns()}".encode()
    sha = hashlib.sha256(data).hexdigest()
    study, _ = store.create_study([NewImage(sha, sha, "dicom", "x.dcm", data=data)], {})
    store.put_study_identity(study.id, identity)
    store.save_interpretation(study.id, "job", interpretation(study.id))
    return study.id, header


def _sr_series(settings, header: pydicom.Dataset) -> list[pydicom.Dataset]:
    series = dicomweb.search_series(settings, str(header.StudyInstanceUID))
    return [s for s in series if str(s.get("Modality", "")) == "SR"]


@pytest.mark.parametrize("via", ["stow", "cstore"])
def test_srs_land_in_the_same_study_with_original_identity(
    store, orthanc_factory, dicom_dir, tmp_path, via
):
    pacs = orthanc_factory()
    pacs.upload(dicom_dir / RG1)
    overlay = "gsps" if via == "stow" else "none"
    settings = pacs.settings(tmp_path / "data", result_delivery=via, result_overlay=overlay)
    study_id, header = _integrated(store, dicom_dir)
    t0 = time.perf_counter()
    outcome = deliver_study(store, settings, study_id, attempts=1)
    print(f"\npush {via}: {time.perf_counter() - t0:.2f}s")
    assert outcome.complete and outcome.delivered == ["dicom"], outcome.pending
    assert len(pacs.studies()) == 1  # filed in the source study, not a new one
    assert len(_sr_series(settings, header)) == 2  # findings + narrative
    modalities = {str(s.get("Modality", "")) for s in dicomweb.search_series(
        settings, str(header.StudyInstanceUID))}  # fmt: skip
    assert modalities == ({"CR", "SR", "PR"} if overlay == "gsps" else {"CR", "SR"})
    for inst in dicomweb.search_instances(settings, str(header.StudyInstanceUID)):
        if str(inst.get("Modality", "")) != "SR":
            continue
        sr = pydicom.dcmread(io.BytesIO(dicomweb.retrieve_instance(
            settings, str(header.StudyInstanceUID), str(inst.SeriesInstanceUID),
            str(inst.SOPInstanceUID))))  # fmt: skip
        assert (sr.PatientID, sr.AccessionNumber) == (header.PatientID, header.AccessionNumber)
        assert sr.PreliminaryFlag == "PRELIMINARY"
    (row,) = store.list_deliveries(study_id=study_id)
    assert row.status == "delivered" and row.detail["via"] == via
    audit = [e for e in store.list_audit(study_id=study_id) if e.action == "result.deliver.dicom"]
    assert audit[-1].outcome == "ok" and audit[-1].actor and audit[-1].detail["where"]
    # sending again changes nothing: same UIDs, Orthanc keeps one copy
    store.set_delivery(study_id, "dicom", "pending")
    assert deliver_study(store, settings, study_id, attempts=1).complete
    assert len(_sr_series(settings, header)) == 2


def test_pacs_down_keeps_the_result_pending_until_it_is_back(
    store, orthanc_factory, dicom_dir, tmp_path
):
    pacs = orthanc_factory(start=False)
    settings = pacs.settings(tmp_path / "data", result_delivery="stow")
    study_id, header = _integrated(store, dicom_dir)
    outcome = deliver_study(store, settings, study_id, attempts=2, backoff_s=0.01)
    assert not outcome.complete and outcome.pending["dicom"]
    (row,) = store.list_deliveries(study_id=study_id)
    assert (row.status, row.attempts) == ("pending", 2)
    pacs.start()
    pacs.upload(dicom_dir / RG1)
    t0 = time.perf_counter()
    outcome = deliver_study(store, settings, study_id, attempts=3, backoff_s=0.2)
    print(f"\npush after restart: {time.perf_counter() - t0:.2f}s")
    assert outcome.complete
    assert store.list_deliveries(study_id=study_id)[0].status == "delivered"
    assert len(_sr_series(settings, header)) == 2

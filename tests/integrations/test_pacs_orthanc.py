"""Pull from a real (private, loopback) Orthanc by DICOMweb and by DIMSE.

RG1_J2KI.dcm (a JPEG 2000 chest CR) is uploaded by REST; MedLens finds it (QIDO-RS,
C-FIND), retrieves it in its stored syntax (WADO-RS, C-MOVE to its own AE) and takes
it in as ONE normal study with one job, its original identity kept apart only.
Timings are printed (pytest -s) for the pull paths.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medlens.integrations import dicomweb, dimse
from medlens.integrations.errors import IntegrationError, PacsUnavailable
from medlens.integrations.identity import capture_identity, identifying_values
from medlens.integrations.pull import pull_study
from medlens.integrations.query import StudyQuery
from medlens.integrations.settings import dicom_node

RG1 = "RG1_J2KI.dcm"


@pytest.fixture(scope="module")
def rg1(orthanc, dicom_dir: Path) -> pydicom.Dataset:
    """RG1 stored in the session's Orthanc; its header as read from the file."""
    orthanc.upload(dicom_dir / RG1)
    return pydicom.dcmread(dicom_dir / RG1, stop_before_pixels=True)


@pytest.fixture
def settings(orthanc, tmp_path: Path):
    return orthanc.settings(tmp_path / "data")


def _pixels(data: bytes) -> np.ndarray:
    from medlens.imaging.ingest import ingest

    image = ingest(data, name="x", keep_values=True)
    assert image.values is not None  # full bit depth (modality LUT), not the 8-bit view
    return np.asarray(image.values)


def test_qido_finds_the_study_by_accession_and_modality(settings, rg1):
    query = StudyQuery(accession=str(rg1.AccessionNumber), modality="CR")
    found = dicomweb.search_studies(settings, query)
    assert [m.study_uid for m in found] == [rg1.StudyInstanceUID]
    assert found[0].modalities == ("CR",) and found[0].instances == 1
    # and a term that does not match finds nothing
    assert dicomweb.search_studies(settings, StudyQuery(accession="no-such", modality="CR")) == []
    assert dicomweb.search_studies(settings, StudyQuery(accession=str(rg1.AccessionNumber),
                                                        modality="MR")) == []  # fmt: skip


def test_c_find_finds_the_same_study(settings, rg1):
    node = dicom_node(settings)
    found = dimse.find_studies(settings, node, StudyQuery(patient_id=str(rg1.PatientID)))
    assert [m.study_uid for m in found] == [rg1.StudyInstanceUID]
    assert dimse.echo(settings, node).ok


def test_wado_rs_retrieves_the_stored_j2k_and_decodes_to_the_file_pixels(settings, rg1, dicom_dir):
    start = time.monotonic()
    [data] = dicomweb.retrieve_study(settings, rg1.StudyInstanceUID)
    print(f"\nWADO-RS retrieve of {RG1}: {time.monotonic() - start:.2f} s")
    got = pydicom.dcmread(io.BytesIO(data))
    original = pydicom.dcmread(dicom_dir / RG1)
    # the stored transfer syntax came back: no transcoding by the PACS
    assert got.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert np.array_equal(_pixels(data), _pixels((dicom_dir / RG1).read_bytes()))


@pytest.mark.parametrize("via", ["dicomweb", "dimse"])
def test_a_pull_gives_one_normal_study_and_job_and_keeps_identity_apart(
    store, orthanc, rg1, tmp_path, via
):
    settings = orthanc.settings(tmp_path / "data")
    start = time.monotonic()
    first = pull_study(store, settings, rg1.StudyInstanceUID, via=via)
    print(f"\npull via {via}: {time.monotonic() - start:.2f} s ({first.line()})")
    again = pull_study(store, settings, rg1.StudyInstanceUID, via=via)
    assert first.created and first.queued and first.images == 1
    assert (again.study_id, again.created, again.queued) == (first.study_id, False, False)
    assert again.job_id == first.job_id
    assert len(store.list_studies()) == 1
    jobs = store.list_jobs(study_id=first.study_id)
    assert [(j.kind, j.status) for j in jobs] == [("interpret", "queued")]

    identity = store.get_study_identity(first.study_id)
    assert identity is not None
    assert identity == {**capture_identity(rg1), "instances": [
        {**capture_identity(rg1)["instances"][0], "position": 1}]}  # fmt: skip
    _assert_normal_store_holds_no_original_identifier(store, tmp_path, identity)

    # the identity goes with its study
    assert store.delete_study(first.study_id)
    assert store.get_study_identity(first.study_id) is None


def _assert_normal_store_holds_no_original_identifier(store, tmp_path: Path, identity):
    """Every row of every table but study_identities, and every file in the blob store."""
    secrets = identifying_values(identity)
    assert {identity["PatientID"], identity["PatientName"], identity["StudyInstanceUID"],
            identity["instances"][0]["SOPInstanceUID"]} <= secrets  # fmt: skip
    dumped = _dump_tables(store, skip={"study_identities"})
    assert "integration.pull" in dumped  # the dump does see the rows (audit, studies...)
    leaks = sorted(s for s in secrets if s in dumped)
    assert leaks == [], f"original identifiers in the normal store's tables: {leaks}"
    files = [p for p in (tmp_path / "images").rglob("*") if p.is_file()]
    assert files, "the blob store holds the de-identified image"
    for path in files:
        raw = path.read_bytes()
        found = sorted(s for s in secrets if s.encode() in raw)
        assert found == [], f"{path.name} holds original identifiers {found}"
    # the check can fail: the identity table itself does hold them
    assert identity["PatientID"] in _dump_tables(store, only={"study_identities"})


def _dump_tables(store, *, skip: set[str] = frozenset(), only: set[str] | None = None) -> str:
    sqlite = store.url.startswith("sqlite")
    list_sql = (
        "SELECT name FROM sqlite_master WHERE type = 'table'"
        if sqlite
        else "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    )
    out = []
    with store._read() as c:
        for (name,) in c.execute(list_sql).fetchall():
            if name in skip or (only is not None and name not in only):
                continue
            rows = c.execute(f'SELECT * FROM "{name}"').fetchall()
            out.append(json.dumps([list(r) for r in rows], default=str))
    return "\n".join(out)


def test_the_ct_and_mr_files_are_refused_with_a_reason(store, orthanc_factory, tmp_path,
                                                       dicom_dir):  # fmt: skip
    from medlens.errors import ImageRefused

    pacs = orthanc_factory()
    ct = pydicom.dcmread(dicom_dir / "CT_small.dcm", stop_before_pixels=True)
    pacs.upload(dicom_dir / "CT_small.dcm")
    with pytest.raises(ImageRefused, match="CT"):
        pull_study(store, pacs.settings(tmp_path / "data"), ct.StudyInstanceUID)
    assert store.list_studies() == []


def test_a_pacs_that_is_down_gives_a_clear_error(store, orthanc_factory, tmp_path):
    pacs = orthanc_factory(start=False)  # ports chosen, nothing listening
    settings = pacs.settings(tmp_path / "data")
    with pytest.raises(PacsUnavailable, match="cannot reach the DICOMweb server"):
        dicomweb.search_studies(settings, StudyQuery())
    with pytest.raises(PacsUnavailable, match=r"no association|cannot connect"):
        dimse.echo(settings, dicom_node(settings))
    with pytest.raises(PacsUnavailable):
        pull_study(store, settings, "1.2.3", via="dicomweb")


def test_an_unknown_study_is_a_clear_error(store, settings):
    with pytest.raises(IntegrationError, match=r"HTTP 404|no instances"):
        pull_study(store, settings, "1.2.3.4.5.6", via="dicomweb")
    with pytest.raises(IntegrationError, match="C-MOVE"):
        pull_study(store, settings, "1.2.3.4.5.6", via="dimse")


def _cli(args: list[str], settings_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings_env}
    return subprocess.run([sys.executable, "-m", "medlens.cli.main", "pacs", *args],
                          capture_output=True, text=True, env=env, timeout=120)  # fmt: skip


def _env(pacs, data_dir: Path) -> dict[str, str]:
    node = {"name": "orthanc", "ae_title": pacs.aet, "host": "127.0.0.1", "port": pacs.dicom_port}
    return {
        "MEDLENS_DATA_DIR": str(data_dir),
        "MEDLENS_DICOMWEB_URL": pacs.dicomweb_url,
        "MEDLENS_DICOM_NODES": json.dumps([node]),
        "MEDLENS_DICOM_LISTEN_PORT": str(pacs.medlens_port),
    }


def test_cli_echo_find_pull_and_one_line_errors(orthanc, rg1, tmp_path):
    env = _env(orthanc, tmp_path / "data")
    echo = _cli(["echo"], env)
    assert echo.returncode == 0 and "orthanc (ORTHANC at 127.0.0.1" in echo.stdout
    found = _cli(["find", "--accession", str(rg1.AccessionNumber), "--modality", "CR"], env)
    assert found.returncode == 0 and rg1.StudyInstanceUID in found.stdout
    assert str(rg1.PatientName) not in found.stdout
    found = _cli(["find", "--patient-id", str(rg1.PatientID), "--via", "dimse"], env)
    assert found.returncode == 0 and rg1.StudyInstanceUID in found.stdout
    pulled = _cli(["pull", rg1.StudyInstanceUID, "--via", "dimse"], env)
    assert pulled.returncode == 0 and "new study" in pulled.stdout, pulled.stderr
    assert str(rg1.PatientID) not in pulled.stdout + pulled.stderr
    again = _cli(["pull", rg1.StudyInstanceUID], env)
    assert again.returncode == 0 and "already here" in again.stdout, again.stderr

    nowhere = json.dumps([{"name": "x", "ae_title": "X", "port": 9}])
    down = {**env, "MEDLENS_DICOMWEB_URL": "http://127.0.0.1:9/dicom-web",
            "MEDLENS_DICOM_NODES": nowhere}  # fmt: skip
    for args in (["find"], ["echo"], ["pull", "1.2.3", "--via", "dimse"]):
        res = _cli(args, down)
        assert res.returncode != 0 and "Traceback" not in res.stderr
        assert res.stderr.startswith("error: ") and len(res.stderr.strip().splitlines()) == 1
    bare = {k: v for k, v in os.environ.items() if not k.startswith("MEDLENS_DICOM")}
    res = subprocess.run([sys.executable, "-m", "medlens.cli.main", "pacs", "find"],
                         capture_output=True, text=True, env=bare, timeout=60)  # fmt: skip
    assert res.returncode != 0 and "MEDLENS_DICOMWEB_URL" in res.stderr


def test_orthanc_refuses_http_and_associations_from_elsewhere(orthanc, settings):
    # 127.0.0.2 stands in for another host without leaving loopback.
    with socket.create_connection(("127.0.0.1", orthanc.http_port), timeout=10,
                                  source_address=("127.0.0.2", 0)) as s:  # fmt: skip
        s.sendall(b"GET /system HTTP/1.0\r\nHost: x\r\n\r\n")
        assert s.recv(64).split(b"\r\n")[0].split()[1] == b"401"
    assert orthanc.get("/system").status_code == 200  # while loopback is served

    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    def associate(calling: str, called: str, source: str) -> bool:
        ae = AE(ae_title=calling)
        ae.add_requested_context(Verification)
        ae.acse_timeout = ae.network_timeout = 10
        assoc = ae.associate("127.0.0.1", orthanc.dicom_port, ae_title=called,
                             bind_address=(source, 0))  # fmt: skip
        ok = bool(assoc.is_established)
        if ok:
            assoc.release()
        return ok

    assert associate("MEDLENS", "ORTHANC", "127.0.0.1")  # the configured modality
    assert not associate("MEDLENS", "ORTHANC", "127.0.0.2")  # right AE, another host
    assert not associate("STRANGER", "ORTHANC", "127.0.0.1")  # unknown AE title
    assert not associate("MEDLENS", "NOT-ORTHANC", "127.0.0.1")  # wrong called AE title

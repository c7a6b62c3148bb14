"""The FHIR transaction against a real FHIR R4 server on loopback: Medplum's FhirRouter +
MemoryRepository (npm, tests/fhir/server.mjs; scripts/services.sh installs it).

Our Bundle (medlens.integrations.fhir_push) → every entry 201 with the `urn:uuid:`
references rewritten; the report is then found from the DICOM Study UID alone, with its
Observations through `_include`. The router does not enforce bindings or reference
types, so the R4B validation stays in test_integrations_delivery.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
import requests

from medlens.config import Settings
from medlens.integrations.fhir_push import DICOM_UID, bundle, post_bundle
from medlens.integrations.identity import capture_identity

from .results_helpers import RG1, interpretation

SERVER = Path(__file__).resolve().parents[2] / "tests" / "fhir"


def _missing() -> str | None:
    if shutil.which("node") is None:
        return "Node.js"
    if not (SERVER / "node_modules" / "@medplum" / "fhir-router").is_dir():
        return "tests/fhir/node_modules (npm ci in tests/fhir)"
    return None


@pytest.fixture(scope="module")
def fhir_url() -> Iterator[str]:
    """`node tests/fhir/server.mjs 0` on 127.0.0.1; its base URL; stopped by PID."""
    missing = _missing()
    if missing:
        if os.environ.get("MEDLENS_CI") == "1":
            pytest.fail(f"MEDLENS_CI=1 but {missing} is missing (run scripts/services.sh)")
        pytest.skip(f"{missing} missing: scripts/services.sh installs it")
    major = int(subprocess.check_output(["node", "-p", "process.versions.node"], text=True)
                .split(".")[0])  # fmt: skip
    flags = ["--experimental-websocket"] if major < 22 else []  # Medplum wants Node >= 22
    proc = subprocess.Popen(["node", *flags, str(SERVER / "server.mjs"), "0"],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "ready PORT" once the R4 definitions are loaded
        assert line.startswith("ready "), f"FHIR server did not start: {line!r}"
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_transaction_then_search_by_study_uid_with_included_results(fhir_url, tmp_path):
    identity = capture_identity(pydicom.dcmread(RG1, stop_before_pixels=True))
    identity["instances"][0]["position"] = 1
    doc = bundle(interpretation(), identity)
    settings = Settings(data_dir=tmp_path, fhir_url=fhir_url)
    start = time.monotonic()
    statuses = post_bundle(settings, doc)
    print(f"\nFHIR push (transaction of {len(doc['entry'])}): {time.monotonic() - start:.2f} s")
    assert statuses == ["201"] * len(doc["entry"])

    # The ImagingStudy by its DICOM Study Instance UID...
    uid = f"{DICOM_UID}|urn:oid:{identity['StudyInstanceUID']}"
    found = requests.get(f"{fhir_url}/ImagingStudy", params={"identifier": uid}, timeout=10)
    [study] = [e["resource"] for e in found.json()["entry"]]
    assert study["identifier"][1]["value"] == identity["AccessionNumber"]
    # ...then the report whose results were derived from it, the results included.
    params = {"result.derived-from": f"ImagingStudy/{study['id']}",
              "_include": "DiagnosticReport:result"}  # fmt: skip
    answer = requests.get(f"{fhir_url}/DiagnosticReport", params=params, timeout=10).json()
    by_mode: dict[str, list[dict]] = {}
    for e in answer["entry"]:
        by_mode.setdefault(e["search"]["mode"], []).append(e["resource"])
    [report] = by_mode["match"]
    assert report["status"] == "preliminary"
    assert report["imagingStudy"] == [{"reference": f"ImagingStudy/{study['id']}"}]
    assert report["subject"] == study["subject"]  # the same Patient, created once
    included = {f"Observation/{o['id']}" for o in by_mode["include"]}
    assert included == {r["reference"] for r in report["result"]} and len(included) == 3
    device = {o["device"]["reference"] for o in by_mode["include"]}
    assert len(device) == 1 and device.pop().startswith("Device/")

    # A second push: Patient and ImagingStudy are conditional creates (200, not 201).
    again = post_bundle(settings, doc)
    assert again[:2] == ["200", "200"]
    found = requests.get(f"{fhir_url}/ImagingStudy", params={"identifier": uid}, timeout=10)
    assert len(found.json()["entry"]) == 1

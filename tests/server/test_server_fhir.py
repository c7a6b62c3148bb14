"""The API's FHIR export is the DiagnosticReport `medlens interpret --fhir` writes.

One study through the server (upload → job → ?format=fhir) and the same image through
the CLI, both on the tiny test models: the resources are equal except for the facts of
each run's own study (its id, when it was created, when the draft finished).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from typer.testing import CliRunner

from medlens.tasks.interpret.fhir import to_diagnostic_report
from medlens.tasks.interpret.result import Interpretation

from .conftest import TINY_ENCODER, TINY_GENERATOR

# What belongs to a run's own study rather than to the interpretation's content.
STUDY_FACTS = ("id", "identifier", "issued", "effectiveDateTime")


def _wait_done(client, job_id: str, timeout: float = 300.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            assert job["status"] == "done", job
            return
        time.sleep(0.1)
    raise AssertionError("the interpretation job did not finish")


def _content(report: dict) -> dict:
    # The contained Provenance records when each run's draft finished: a run's own fact too.
    contained = [{k: v for k, v in r.items() if k != "recorded"} for r in report["contained"]]
    return {k: v for k, v in report.items() if k not in STUDY_FACTS} | {"contained": contained}


def test_cli_fhir_equals_the_api_fhir(client_factory, upload, cxr_png, tiny_test_models,
                                      tmp_path: Path):
    from medlens.cli.main import app

    with client_factory(run_jobs=True) as client:
        created = upload(client, ("chest.png", cxr_png)).json()
        _wait_done(client, created["job"]["id"])
        url = created["interpretation_url"]
        api = client.get(url, params={"format": "fhir"}).json()
        stored = Interpretation.model_validate(client.get(url).json())
    assert api == to_diagnostic_report(stored, study_created=created["created_at"])
    assert api["id"] == created["id"] and api["effectiveDateTime"] == created["created_at"]

    image = tmp_path / "chest.png"
    image.write_bytes(cxr_png)
    out = tmp_path / "report.fhir.json"
    res = CliRunner().invoke(app, [
        "interpret", str(image), "--json", "--fhir", str(out), "--model", TINY_GENERATOR,
        "--encoder", TINY_ENCODER, "--max-new-tokens", "24", "--similar", "0"])
    assert res.exit_code in (0, 3), res.output  # 3: the tiny gate refused; still a report
    cli = json.loads(out.read_text(encoding="utf-8"))
    cli_interp = Interpretation.model_validate(json.loads(res.stdout))

    for resource in (api, cli):
        report = DiagnosticReport.model_validate(resource)
        assert report.status == "preliminary" and report.meta.tag[0].code == "AIAST"
    assert cli["id"] == cli_interp.study_id and "effectiveDateTime" not in cli
    assert _content(cli) == _content(api)

"""One language behaviour everywhere (issue 23, point 6): a server job in French runs the
back-translation check the CLI runs, with the same result, and urgency reads it."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from medlens.cli.main import app

from .job_helpers import wait_job

GEN = "medlens/test-scripted"  # answers the back-translation request with its English report




def test_french_job_is_back_translated_like_the_cli(
    client_factory, upload, tiny_test_models, nih_images: list[Path]
) -> None:
    image = nih_images[0]
    with client_factory(run_jobs=True, generator=GEN) as client:
        r = upload(client, ("a.png", image.read_bytes()), language="fr")
        assert r.status_code == 201, r.text
        assert wait_job(client, r.json()["job"]["id"])["status"] == "done"
        served = client.get(r.json()["interpretation_url"]).json()
    res = CliRunner().invoke(app, ["interpret", str(image), "--generator", GEN,
                                   "--language", "fr", "--similar", "0", "--json"])
    assert res.exit_code == 0, res.output
    cli = json.loads(res.stdout)
    for interp in (served, cli):
        assert interp["language"] == "fr"
        check = interp["language_check"]
        assert check is not None and "pneumothorax" in check["back_translation"]
        assert interp["cross_check"]["source_text"] == "back_translation"
        assert interp["urgency"]["level"] == "urgent"
        assert "U01" in [x["rule_id"] for x in interp["urgency"]["reasons"]]
        assert not any("only scores were used" in w for w in interp["warnings"])
    assert served["language_check"]["back_translation"] == cli["language_check"][
        "back_translation"]
    assert served["urgency"]["reasons"] == cli["urgency"]["reasons"]

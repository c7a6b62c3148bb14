"""`medlens serve`'s log stays free of transformers warnings and weight-loading bars
through startup and a whole upload → interpretation job (models load in the server)."""

from __future__ import annotations

import os
import re
import time

import httpx

_TQDM = re.compile(r"\d+%\|")
_OURS = ("MEDLENS_VERBOSE", "HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY",
         "TRANSFORMERS_NO_ADVISORY_WARNINGS")  # fmt: skip


def _wait_job(url: str, job_id: str, timeout: float = 180.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{url}/v1/jobs/{job_id}", timeout=10).json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s")


def test_serve_log_has_no_third_party_noise(spawn_server, tmp_path, tiny_test_models, cxr_png,
                                            monkeypatch):  # fmt: skip
    for name in _OURS:  # set in-process by earlier model loads: the server must not inherit them
        monkeypatch.delenv(name, raising=False)
    server = spawn_server(tmp_path / "data", args=("--log-level", "info"))
    try:
        r = httpx.post(f"{server.url}/v1/studies", timeout=30,
                       files=[("files", ("chest.png", cxr_png, "image/png"))])  # fmt: skip
        assert r.status_code == 201, r.text
        job = _wait_job(server.url, r.json()["job"]["id"])
        assert job["status"] == "done", job
    finally:
        server.stop()
    log = server.log.read_text(errors="replace")
    assert "POST /v1/studies" in log  # the log is the server's real output, info level
    for noise in ("[transformers]", "Loading weights", "Warning"):
        assert noise not in log, log[-3000:]
    assert not _TQDM.search(log), log[-3000:]
    assert "MEDLENS_VERBOSE" not in os.environ

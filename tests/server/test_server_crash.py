"""Crash safety: SIGKILL `medlens serve` at random moments while it takes uploads and runs
jobs, restart it, and check that nothing is lost or half-written.

Default run: 3 rounds. `pytest -m slow` runs 50.
"""

from __future__ import annotations

import io
import random
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from medlens.config import Settings
from medlens.store import open_store
from medlens.tasks.interpret.result import Interpretation

TINY_GENERATOR, TINY_ENCODER = "medlens/test-medgemma", "medlens/test-medsiglip"

FAST_ENV = {"MEDLENS_MAX_NEW_TOKENS": "8", "MEDLENS_RATE_LIMIT_PER_MINUTE": "100000"}


def _variant(base: bytes, n: int) -> bytes:
    """A distinct image (own hash) per upload: the base X-ray with a few pixels changed."""
    img = np.array(Image.open(io.BytesIO(base)).convert("L"))
    rng = np.random.default_rng(n)
    ys, xs = rng.integers(0, img.shape[0], 8), rng.integers(0, img.shape[1], 8)
    img[ys, xs] = rng.integers(0, 255, 8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _submit(url: str, images: list[bytes], accepted: list[str], stop: threading.Event) -> None:
    for i, data in enumerate(images):
        if stop.is_set():
            return
        try:
            r = httpx.post(f"{url}/v1/studies", files=[("files", (f"{i}.png", data, "image/png"))],
                           timeout=30)
        except httpx.HTTPError:
            return  # the server died mid-request: this upload may or may not exist
        if r.status_code in (200, 201):
            accepted.append(r.json()["job"]["id"])


def _check_consistent(data_dir: Path, known_jobs: set[str]) -> dict[str, int]:
    db = data_dir / "medlens.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store = open_store(Settings(data_dir=data_dir, generator=TINY_GENERATOR,
                                encoder=TINY_ENCODER))
    try:
        jobs = {j.id: j for j in store.list_jobs(limit=100_000)}
        assert known_jobs <= set(jobs), f"lost jobs: {known_jobs - set(jobs)}"
        counts: dict[str, int] = {}
        for job in jobs.values():
            assert job.status in ("queued", "running", "done", "failed"), job
            counts[job.status] = counts.get(job.status, 0) + 1
            if job.status == "done" and job.kind == "interpret":
                data = store.get_interpretation(job.study_id)
                assert data is not None, f"job {job.id} done without its interpretation"
                Interpretation.model_validate(data)  # whole, valid JSON
        for study in store.list_studies(limit=100_000):
            assert study.images, f"study {study.id} without images"
            assert any(j.study_id == study.id for j in jobs.values()), f"{study.id} has no job"
            for img in study.images:
                assert store.blobs.exists(img.sha256), f"missing blob for {study.id}"
        return counts
    finally:
        store.close()


def _crash_rounds(start_server, tmp_path: Path, base: bytes, rounds: int, per_round: int,
                 seed: int) -> None:
    rng = random.Random(seed)
    data_dir = tmp_path / "data"
    known: set[str] = set()
    n = 0
    for _ in range(rounds):
        server = start_server(data_dir, env=FAST_ENV)
        accepted: list[str] = []
        stop = threading.Event()
        images = [_variant(base, n + i) for i in range(per_round)]
        n += per_round
        submitter = threading.Thread(target=_submit, args=(server.url, images, accepted, stop))
        submitter.start()
        time.sleep(rng.uniform(0.0, 6.0))
        server.kill()  # SIGKILL: no shutdown code runs
        stop.set()
        submitter.join(timeout=60)
        known.update(accepted)
        _check_consistent(data_dir, known)

    # Restart: interrupted and queued jobs resume and finish.
    server = start_server(data_dir, env=FAST_ENV)
    try:
        deadline = time.monotonic() + 60 + 20 * len(known)
        while time.monotonic() < deadline:
            statuses = [httpx.get(f"{server.url}/v1/jobs/{j}").json()["status"] for j in known]
            queued = httpx.get(f"{server.url}/healthz").json()["queued_jobs"]
            if queued == 0 and all(s in ("done", "failed") for s in statuses):
                break
            time.sleep(1.0)
        jobs = [httpx.get(f"{server.url}/v1/jobs/{j}").json() for j in known]
        # A job that was running at every one of its max_attempts kills is failed on
        # purpose (a job that crashes the process must not crash it forever); nothing
        # else may fail, and the rest resumed and finished.
        failed = [j for j in jobs if j["status"] != "done"]
        assert all(j["status"] == "failed" and "Gave up after" in j["error"] for j in failed), \
            failed
        assert len(failed) < len(jobs), jobs
    finally:
        server.stop()
    counts = _check_consistent(data_dir, known)
    # Uploads whose response was lost in a kill may exist too: they finished as well.
    assert set(counts) <= {"done", "failed"}, counts


def test_sigkill_at_random_moments_loses_nothing(spawn_server, tmp_path, tiny_test_models,
                                                 cxr_png):
    _crash_rounds(spawn_server, tmp_path, cxr_png, rounds=3, per_round=2, seed=7)


@pytest.mark.slow
def test_sigkill_many_rounds(spawn_server, tmp_path, tiny_test_models, cxr_png):
    _crash_rounds(spawn_server, tmp_path, cxr_png, rounds=50, per_round=2, seed=2024)

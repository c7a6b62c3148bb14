"""`medlens batch`: folder and CSV inputs, refusals, idempotent re-runs, exports."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from medlens.config import load_settings
from medlens.jobs.batch import collect, submit
from medlens.store import open_store


@pytest.fixture
def archive(tmp_path, nih_images) -> Path:
    folder = tmp_path / "night"
    (folder / "bed1").mkdir(parents=True)
    for img in nih_images[:2]:
        shutil.copy(img, folder / img.name)
    shutil.copy(nih_images[2], folder / "bed1" / nih_images[2].name)
    (folder / "notes.png").write_bytes(b"PK\x03\x04 a zip renamed")
    return folder


def _batch(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "medlens.cli.main", "batch", *args,
           "--database-url", f"sqlite:///{tmp_path / 'b.db'}",
           "--job-kind", "test-compute", "--handlers", "medlens.jobs.testing:HANDLERS"]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_batch_folder_runs_jobs_and_exports_jsonl_and_csv(tmp_path, archive):
    out = tmp_path / "out.jsonl"
    proc = _batch(tmp_path, str(archive), "--export", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "3 done, 1 refused" in proc.stdout
    assert "notes.png" in proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["status"] for r in rows) == ["done", "done", "done", "refused"]
    assert all(r["result"]["digest"] for r in rows if r["status"] == "done")
    # Only de-identified re-encoded bytes were stored, never the upload itself.
    store = open_store(f"sqlite:///{tmp_path / 'b.db'}")
    study = store.get_study(next(r["study_id"] for r in rows if r["study_id"]))
    assert study.images[0].format == "png"
    store.close()

    # Re-running is idempotent: same studies, no new jobs; CSV export works too.
    out_csv = tmp_path / "out.csv"
    again = _batch(tmp_path, str(archive), "--export", str(out_csv))
    assert again.returncode == 0, again.stderr
    with out_csv.open() as fh:
        rows2 = list(csv.DictReader(fh))
    assert {r["study_id"] for r in rows2} == {r["study_id"] or "" for r in rows}
    assert {r["job_id"] for r in rows2} == {r["job_id"] or "" for r in rows}


def test_batch_csv_groups_rows_into_studies_with_context(tmp_path, nih_images):
    table = tmp_path / "list.csv"
    with table.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "study", "indication", "language"])
        w.writerow([str(nih_images[0]), "A", "cough", "fr"])
        w.writerow([str(nih_images[1]), "A", "", ""])
        w.writerow([str(nih_images[2]), "", "fever", ""])
    items = collect(table)
    assert [(i.key, len(i.paths)) for i in items] == [("A", 2), (str(nih_images[2]), 1)]
    assert items[0].context == {"indication": "cough", "language": "fr"}
    store = open_store(f"sqlite:///{tmp_path / 'c.db'}", images_dir=tmp_path / "img")
    subs = submit(store, load_settings(), items, kind="test-compute")
    assert [s.error for s in subs] == [None, None]
    study = store.get_study(subs[0].study_id)
    assert len(study.images) == 2 and study.context["indication"] == "cough"
    assert store.get_job(subs[0].job_id).status == "queued"
    store.close()


def test_batch_refuses_bad_inputs(tmp_path):
    from medlens.errors import DataError

    bad = tmp_path / "x.csv"
    bad.write_text("file\nx.png\n")
    with pytest.raises(DataError):
        collect(bad)
    with pytest.raises(DataError):
        collect(tmp_path / "missing.txt")


def test_batch_can_leave_the_work_to_workers(tmp_path, nih_images):
    folder = tmp_path / "in"
    folder.mkdir()
    for img in nih_images[:3]:
        shutil.copy(img, folder / img.name)
    queued = _batch(tmp_path, str(folder), "--no-run", "--no-wait")
    assert queued.returncode == 0, queued.stderr
    assert "3 queued" in queued.stdout
    url = f"sqlite:///{tmp_path / 'b.db'}"
    worker = subprocess.run(
        [sys.executable, "-m", "medlens.cli.main", "worker", "--database-url", url,
         "--handlers", "medlens.jobs.testing:HANDLERS", "--kind", "test-compute",
         "--exit-when-idle", "--poll-interval", "0.05"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert worker.returncode == 0, worker.stderr
    assert worker.stdout.count("done ") == 3
    store = open_store(url)
    assert store.count_jobs() == {"queued": 0, "running": 0, "done": 3, "failed": 0}
    store.close()

"""`medlens batch --demo` (issue 23): like `serve --demo`, its studies go to the demo folder
and carry the demo mark, so a real-mode server on the same machine never lists them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from medlens.store import open_store


def _batch(home: Path, folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MEDLENS_DATA_DIR", "MEDLENS_DEMO")}
    env["HOME"] = str(home)
    cmd = [sys.executable, "-m", "medlens.cli.main", "batch", str(folder), *args,
           "--job-kind", "test-compute", "--handlers", "medlens.jobs.testing:HANDLERS"]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def _contexts(db: Path) -> list[dict]:
    store = open_store(f"sqlite:///{db}")
    try:
        return [s.context for s in store.list_studies()]
    finally:
        store.close()


def test_batch_demo_uses_the_demo_folder_and_marks_its_studies(tmp_path, nih_images):
    folder = tmp_path / "night"
    folder.mkdir()
    shutil.copy(nih_images[0], folder / nih_images[0].name)
    home = tmp_path / "home"
    proc = _batch(home, folder, "--demo")
    assert proc.returncode == 0, proc.stderr
    assert "1 done" in proc.stdout
    assert not (home / ".medlens" / "medlens.db").exists()  # the real store is untouched
    demo = _contexts(home / ".medlens" / "demo" / "medlens.db")
    assert len(demo) == 1 and demo[0]["demo"] is True

    real = _batch(home, folder)  # the same files without --demo: real studies, no mark
    assert real.returncode == 0, real.stderr
    assert [c.get("demo") for c in _contexts(home / ".medlens" / "medlens.db")] == [None]

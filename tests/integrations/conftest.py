"""Hospital-integration fixtures: a PRIVATE Orthanc on loopback, and the stores.

`orthanc` (one per session) and `orthanc_factory` (own instances, e.g. to stop one or to
add Lua hooks) run `Orthanc <folder>` from a temporary copy of tests/orthanc/orthanc.json
with a temporary storage folder and free ports; MedLens is known to it as modality
"medlens" (AE MEDLENS at 127.0.0.1:<free port>). Ready when GET /system answers 200;
stopped by PID (SIGTERM, then wait: Orthanc takes 3-4 s). Never the packaged service.
Without Orthanc (scripts/services.sh installs it) the tests skip, and fail under MEDLENS_CI=1.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from medlens.config import Settings
from medlens.store import open_store
from medlens.store.sqlstore import SqlStore
from medlens.store.testing import pg_required, pg_test_url, temp_pg_database

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "tests" / "orthanc" / "orthanc.json"
PLUGINS = Path("/usr/share/orthanc/plugins")
ORTHANC_AET = "ORTHANC"
MEDLENS_AET = "MEDLENS"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


class Orthanc:
    """One private Orthanc: its folder, ports, process; small REST helpers."""

    def __init__(self, root: Path, extra: dict[str, Any] | None = None) -> None:
        self.root = root
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.medlens_port = free_port()  # where Orthanc sends C-MOVE/C-STORE to MedLens
        self.aet = ORTHANC_AET
        self.extra = extra or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / "orthanc.log"

    # --- addresses -------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    def settings(self, data_dir: Path, **overrides: Any) -> Settings:
        """MedLens settings pointing at this Orthanc (DICOMweb and one DIMSE node)."""
        node = {"name": "orthanc", "ae_title": self.aet, "host": "127.0.0.1",
                "port": self.dicom_port}  # fmt: skip
        values: dict[str, Any] = {
            "data_dir": data_dir,
            "dicom_nodes": [node],
            "local_ae_title": MEDLENS_AET,
            "dicom_listen_host": "127.0.0.1",
            "dicom_listen_port": self.medlens_port,
            "dicomweb_url": self.dicomweb_url,
        }
        return Settings(**{**values, **overrides})

    # --- lifecycle -------------------------------------------------------------
    def write_config(self) -> Path:
        folder = self.root / "config"
        storage = self.root / "storage"
        folder.mkdir(parents=True, exist_ok=True)
        storage.mkdir(parents=True, exist_ok=True)
        config = json.loads(CONFIG.read_text("utf-8"))
        config.update(StorageDirectory=str(storage), IndexDirectory=str(storage),
                      HttpPort=self.http_port, DicomPort=self.dicom_port)  # fmt: skip
        config["DicomModalities"] = {
            "medlens": {"AET": MEDLENS_AET, "Host": "127.0.0.1", "Port": self.medlens_port}
        }
        config["DicomWeb"]["Host"] = f"127.0.0.1:{self.http_port}"
        config = _deep_merge(config, self.extra)
        (folder / "orthanc.json").write_text(json.dumps(config, indent=2), "utf-8")
        return folder

    def start(self, timeout: float = 30.0) -> None:
        folder = self.write_config()
        self.proc = subprocess.Popen(
            ["Orthanc", f"--logfile={self.log}", str(folder)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited ({self.proc.returncode}): {self.log_tail()}")
            try:
                if self.get("/system").status_code == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer GET /system in {timeout} s")

    def stop(self) -> None:
        """SIGTERM by PID, then wait (Orthanc needs a few seconds); SIGKILL if it hangs."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # --- REST ------------------------------------------------------------------
    def get(self, path: str, **kwargs: Any) -> Any:
        import requests

        return requests.get(self.url + path, timeout=10, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        import requests

        return requests.post(self.url + path, timeout=30, **kwargs)

    def upload(self, path: Path) -> dict[str, Any]:
        """POST /instances a DICOM file; Orthanc's answer (ID, ParentStudy...)."""
        r = self.post("/instances", data=path.read_bytes(),
                      headers={"Content-Type": "application/dicom"})  # fmt: skip
        r.raise_for_status()
        return dict(r.json())

    def studies(self) -> list[str]:
        return list(self.get("/studies").json())


def orthanc_available() -> str | None:
    """None when Orthanc and its plugins are installed, else what is missing."""
    missing = [] if shutil.which("Orthanc") else ["Orthanc (apt: orthanc)"]
    for lib, pkg in (("libOrthancDicomWeb.so", "orthanc-dicomweb"),
                     ("libOrthancGdcm.so", "orthanc-gdcm")):  # fmt: skip
        if not (PLUGINS / lib).is_file():
            missing.append(f"{lib} (apt: {pkg})")
    return ", ".join(missing) or None


def _require_orthanc() -> None:
    missing = orthanc_available()
    if missing:
        if os.environ.get("MEDLENS_CI") == "1":
            pytest.fail(f"MEDLENS_CI=1 but {missing} is missing (run scripts/services.sh)")
        pytest.skip(f"Orthanc not installed: {missing} (scripts/services.sh installs it)")


@pytest.fixture(scope="session")
def orthanc() -> Iterator[Orthanc]:
    """One private Orthanc for the session (do not stop it; use orthanc_factory for that)."""
    _require_orthanc()
    root = Path(tempfile.mkdtemp(prefix="medlens-orthanc-"))
    server = Orthanc(root)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def orthanc_factory(tmp_path: Path) -> Iterator[Callable[..., Orthanc]]:
    """Start own Orthanc instances (extra config merged in); all stopped at teardown."""
    _require_orthanc()
    started: list[Orthanc] = []

    def make(extra: dict[str, Any] | None = None, *, start: bool = True) -> Orthanc:
        server = Orthanc(tmp_path / f"orthanc-{len(started)}", extra)
        started.append(server)
        if start:
            server.start()
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def pg_base_url() -> str:
    url = pg_test_url()
    if url is None:
        if pg_required():
            pytest.fail("MEDLENS_CI=1 but MEDLENS_TEST_PG_URL is unset (run scripts/services.sh)")
        pytest.skip("MEDLENS_TEST_PG_URL unset: PostgreSQL tests skipped")
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'medlens.db'}"
        return
    with temp_pg_database(request.getfixturevalue("pg_base_url")) as url:
        yield url


@pytest.fixture
def store(db_url: str, tmp_path: Path) -> Iterator[SqlStore]:
    s = open_store(db_url, images_dir=tmp_path / "images")
    yield s
    s.close()

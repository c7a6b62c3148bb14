"""Fixtures for server tests: apps on temporary data dirs, real sample images."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from medlens.config import Settings

BASE_URL = "http://127.0.0.1"
TINY_GENERATOR = "medlens/test-medgemma"
TINY_ENCODER = "medlens/test-medsiglip"


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir, "demo": True, "generator": TINY_GENERATOR,
        "encoder": TINY_ENCODER, "max_new_tokens": 24, "rate_limit_per_minute": 1000,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def client_factory(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """`with client_factory(run_jobs=False, api_tokens=[...]) as client:` on a fresh store."""
    from medlens.server.app import create_app

    counter = {"n": 0}

    @contextmanager
    def factory(*, run_jobs: bool = False, **overrides: Any) -> Iterator[TestClient]:
        counter["n"] += 1
        data_dir = overrides.pop("data_dir", tmp_path / f"data{counter['n']}")
        settings = make_settings(data_dir, **overrides)
        app = create_app(settings, run_jobs=run_jobs)
        with TestClient(app, base_url=BASE_URL) as client:
            yield client

    yield factory


@pytest.fixture(scope="session")
def cxr_png(nih_images: list[Path]) -> bytes:
    if not nih_images:
        pytest.skip("no NIH sample images")
    return nih_images[0].read_bytes()


@pytest.fixture(scope="session")
def cxr_png_2(nih_images: list[Path]) -> bytes:
    return nih_images[1].read_bytes()


@pytest.fixture(scope="session")
def zip_as_png() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("x.txt", "not an image " * 50)
    return buf.getvalue()


@pytest.fixture(scope="session")
def truncated_dicom(dicom_dir: Path) -> bytes:
    data = (dicom_dir / "RG1_J2KI.dcm").read_bytes()
    return data[: len(data) - 20 * 1024]


def _upload(client: TestClient, *files: tuple[str, bytes],
            headers: dict[str, str] | None = None, **fields: str) -> Any:
    return client.post("/v1/studies", files=[("files", (n, d, "application/octet-stream"))
                                              for n, d in files], data=fields,
                       headers=headers or {})


@pytest.fixture
def upload() -> Callable[..., Any]:
    """`upload(client, ("a.png", data), indication="...")` → response."""
    return _upload


# --- a real server in a subprocess -----------------------------------------------------------
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    proc: subprocess.Popen
    url: str
    port: int
    data_dir: Path
    log: Path

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def start_server(data_dir: Path, *, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = (), timeout: float = 90.0) -> ServerProcess:
    """`medlens serve --demo` on a free loopback port; returns once /healthz answers."""
    import httpx

    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / f"server-{port}.log"
    full_env = {**os.environ, "MEDLENS_DATA_DIR": str(data_dir),
                "MEDLENS_GENERATOR": TINY_GENERATOR, "MEDLENS_ENCODER": TINY_ENCODER,
                "MEDLENS_MAX_NEW_TOKENS": "24", **(env or {})}
    cmd = [sys.executable, "-m", "medlens.cli.main", "serve", "--demo", "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning", *args]
    with open(log, "ab") as fh:
        proc = subprocess.Popen(cmd, env=full_env, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return ServerProcess(proc, url, port, data_dir, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server did not start in {timeout}s: {log.read_text()[-3000:]}")


@pytest.fixture
def server(tmp_path: Path, tiny_test_models) -> Iterator[ServerProcess]:
    srv = start_server(tmp_path / "data")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def spawn_server() -> Callable[..., ServerProcess]:
    """`spawn_server(data_dir, env={...})` → a started ServerProcess (caller stops it)."""
    return start_server

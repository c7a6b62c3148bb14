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
        settings = make_settings(tmp_path / f"data{counter['n']}", **overrides)
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

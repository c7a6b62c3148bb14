"""Store fixtures: every store test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from medlens.store import NewImage, open_store
from medlens.store.sqlstore import SqlStore
from medlens.store.testing import pg_required, pg_test_url, temp_pg_database


@pytest.fixture(scope="session")
def pg_base_url() -> str:
    url = pg_test_url()
    if url is None:
        if pg_required():
            pytest.fail("MEDLENS_CI=1 but MEDLENS_TEST_PG_URL is unset (run scripts/services.sh)")
        pytest.skip("MEDLENS_TEST_PG_URL unset: PostgreSQL tests skipped")
    return url


@pytest.fixture
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'medlens.db'}"
        return
    base = request.getfixturevalue("pg_base_url")
    with temp_pg_database(base) as url:
        yield url


@pytest.fixture
def store(db_url: str, tmp_path: Path) -> Iterator[SqlStore]:
    s = open_store(db_url, images_dir=tmp_path / "images")
    yield s
    s.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Any test using `store` or `db_url` runs once per backend.
    if "db_url" in metafunc.fixturenames:
        metafunc.parametrize("db_url", ["sqlite", "postgres"], indirect=True)


@pytest.fixture
def new_image():
    """Factory: bytes -> NewImage carrying those bytes (the store writes the blob)."""

    def make(payload: bytes, name: str = "x.png") -> NewImage:
        sha = hashlib.sha256(payload).hexdigest()
        return NewImage(
            sha256=sha,
            pixel_sha256=f"px-{sha[:8]}",
            format="png",
            filename=name,
            metadata={"rows": 1},
            data=payload,
        )

    return make

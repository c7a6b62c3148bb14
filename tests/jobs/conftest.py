"""Job tests run on both store backends (same fixtures as tests/store)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from medlens.store import open_store
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

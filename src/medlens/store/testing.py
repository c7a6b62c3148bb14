"""Helpers for tests that need a store: throwaway PostgreSQL databases.

Tests never use the server's own database: each gets a database with a random name
on the server at MEDLENS_TEST_PG_URL, dropped afterwards. Without that URL PostgreSQL
tests are skipped, unless MEDLENS_CI=1, where a missing server is a failure.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

PG_URL_ENV = "MEDLENS_TEST_PG_URL"


def pg_test_url() -> str | None:
    return os.environ.get(PG_URL_ENV) or None


def pg_required() -> bool:
    return os.environ.get("MEDLENS_CI") == "1"


def _with_db(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{dbname}"))


@contextlib.contextmanager
def temp_pg_database(base_url: str, *, prefix: str = "medlens_test_") -> Iterator[str]:
    """Create a database with a random name; yield its URL; drop it (and its sessions)."""
    import psycopg

    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_db(base_url, name)
    finally:
        with psycopg.connect(base_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

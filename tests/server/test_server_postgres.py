"""The same API on PostgreSQL (a throwaway database on MEDLENS_TEST_PG_URL)."""

from __future__ import annotations

import os
import uuid

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_url():
    base = os.environ.get("MEDLENS_TEST_PG_URL")
    if not base:
        if os.environ.get("MEDLENS_CI") == "1":
            pytest.fail("MEDLENS_TEST_PG_URL must be set in CI (scripts/services.sh)")
        pytest.skip("MEDLENS_TEST_PG_URL not set")
    psycopg = pytest.importorskip("psycopg")
    name = f"medlens_srv_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield base.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_api_on_postgres(client_factory, upload, cxr_png, pg_url):
    with client_factory(database_url=pg_url) as client:
        assert client.get("/healthz").json()["store"] == "postgresql"
        first = upload(client, ("a.png", cxr_png), headers={"Idempotency-Key": "k1"})
        again = upload(client, ("a.png", cxr_png), headers={"Idempotency-Key": "k1"})
        assert first.status_code == 201 and again.status_code == 200
        sid = first.json()["id"]
        assert again.json()["id"] == sid
        assert [s["id"] for s in client.get("/v1/studies").json()["studies"]] == [sid]
        assert client.get(f"/v1/studies/{sid}/images/0.png").status_code == 200
        assert client.delete(f"/v1/studies/{sid}").status_code == 204
        actions = [e.action for e in client.app.state.medlens.store.list_audit(limit=20)]
        assert "upload" in actions and "delete" in actions

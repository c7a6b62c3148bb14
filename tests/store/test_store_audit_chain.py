"""The audit log's hash chain, on SQLite and PostgreSQL: append-only, chained, verifiable.

"Behind its back" edits play an operator with file or superuser access: they lift the
append-only triggers for one transaction, change a row and put the triggers back.
`medlens audit verify` must then name the entry.
"""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
from typer.testing import CliRunner

from medlens.cli.main import app
from medlens.store import open_store
from medlens.store.audit_chain import GENESIS, ChainWalker
from medlens.store.migrate import apply_pg_migrations, apply_sqlite_migrations
from medlens.store.schema import PG_MIGRATIONS, SQLITE_MIGRATIONS
from medlens.store.sqlite import SqliteStore, connect

_SQLITE_TRIGGERS = """
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
"""


def behind_its_back(store, statement: str, params: tuple = ()) -> None:
    """Run `statement` with the append-only triggers lifted (as the file owner could)."""
    if isinstance(store, SqliteStore):
        with store.sqlite_connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DROP TRIGGER audit_events_no_update")
            conn.execute("DROP TRIGGER audit_events_no_delete")
            assert conn.execute(statement, params).rowcount == 1
            for trigger in _SQLITE_TRIGGERS.strip().split("END;")[:2]:
                conn.execute(trigger + "END;")
            conn.commit()
        return
    with store.pg_connection() as conn, conn.transaction():
        conn.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_change")
        assert conn.execute(statement.replace("?", "%s"), params).rowcount == 1
        conn.execute("ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_change")


def _ids(store) -> list[int]:
    return sorted(e.id for e in store.list_audit(limit=10_000))


def _fill(store, n: int) -> list[int]:
    for i in range(n):
        store.audit(f"user{i % 3}", "view", study_id=f"s{i}", detail={"i": i, "via": "api"})
    return _ids(store)


def test_chain_verifies_with_tricky_details(store):
    assert store.verify_audit_chain().ok and store.verify_audit_chain().count == 0
    details = [
        {"b": 1e20, "a": [1.5, "é ü 中", None, True], "n": 2.0, "neg": -0.0},
        {"nested": {"z": 1, "a": {"k": [0.1, 1e-7, 123456789012345678]}}},
        {},
        None,
    ]
    for d in details:
        store.audit("dr. Ünal", "export", study_id=None, outcome="ok", detail=d)
    report = store.verify_audit_chain()
    assert (report.ok, report.count, report.broken_id) == (True, 4, None)
    assert report.head != GENESIS and len(report.head) == 64


def test_concurrent_writer_threads_never_fork_the_chain(store):
    def write(t: int) -> None:
        for i in range(25):
            store.audit(f"thread{t}", "view", detail={"i": i})

    threads = [threading.Thread(target=write, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    report = store.verify_audit_chain()
    assert report.ok, report.problem
    assert report.count == 150


def test_concurrent_writer_processes_never_fork_the_chain(store, db_url):
    code = (
        "import sys; from medlens.store import open_store\n"
        "s = open_store(sys.argv[1])\n"
        "for i in range(30): s.audit('proc' + sys.argv[2], 'view', detail={'i': i})\n"
        "s.close()\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, db_url, str(p)]) for p in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    report = store.verify_audit_chain()
    assert (report.ok, report.count) == (True, 90), report.problem


def test_update_delete_and_unhashed_inserts_are_refused_by_the_database(store):
    _fill(store, 3)
    for sql in (
        "UPDATE audit_events SET actor = 'someone else'",
        "DELETE FROM audit_events",
        "INSERT INTO audit_events (at, actor, action, outcome, detail)"
        " VALUES ('2020-01-01T00:00:00+00:00', 'x', 'view', 'ok', '{}')",
    ):
        with pytest.raises(Exception), store._write() as c:  # noqa: B017 - driver errors differ
            c.execute(sql)
    if not isinstance(store, SqliteStore):
        with pytest.raises(Exception, match="append-only"), store._write() as c:
            c.execute("TRUNCATE audit_events")
    assert len(_ids(store)) == 3 and store.verify_audit_chain().ok


@pytest.mark.parametrize(
    ("column", "value"),
    [("detail", '{"i": 99, "via": "api"}'), ("actor", "innocent"), ("study_id", "s-other")],
)
def test_an_entry_edited_behind_its_back_is_named(store, column, value):
    ids = _fill(store, 6)
    target = ids[3]
    cast = "::jsonb" if column == "detail" and not isinstance(store, SqliteStore) else ""
    behind_its_back(
        store, f"UPDATE audit_events SET {column} = ?{cast} WHERE id = ?", (value, target)
    )
    report = store.verify_audit_chain()
    assert (report.ok, report.broken_id, report.count) == (False, target, 3)
    assert "edited" in report.problem


def test_a_deleted_entry_in_the_middle_is_detected(store):
    ids = _fill(store, 6)
    behind_its_back(store, "DELETE FROM audit_events WHERE id = ?", (ids[2],))
    report = store.verify_audit_chain()
    assert (report.ok, report.broken_id) == (False, ids[3])
    assert "removed" in report.problem


def test_an_anchor_catches_a_removed_tail(store):
    ids = _fill(store, 4)
    head = store.verify_audit_chain().head
    assert store.verify_audit_chain(anchor=head).ok
    behind_its_back(store, "DELETE FROM audit_events WHERE id = ?", (ids[-1],))
    assert store.verify_audit_chain().ok  # the links alone cannot see a missing tail
    report = store.verify_audit_chain(anchor=head)
    assert not report.ok and "anchor" in report.problem


def _old_database(db_url: str) -> None:
    """A database as MedLens left it before the chain: store_001 only, rows already in."""
    rows = [("dr. a", "view", "s1", "ok", '{"via": "page"}'),
            ("token:ab12", "delete", "s2", "not_found", '{"x": 1e20, "y": [0.5, "é"]}'),
            ("local", "login", None, "denied", "{}")]  # fmt: skip
    if db_url.startswith("sqlite"):
        conn = connect(db_url.removeprefix("sqlite:///"))
        apply_sqlite_migrations(conn, SQLITE_MIGRATIONS[:1])
        for i, r in enumerate(rows):
            conn.execute(
                "INSERT INTO audit_events (at, actor, action, study_id, outcome, detail)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (f"2024-05-0{i + 1}T10:00:00.123456+00:00", *r),
            )
        conn.close()
        return
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        apply_pg_migrations(conn, PG_MIGRATIONS[:1])
        conn.execute("SET TIME ZONE 'Asia/Kolkata'")  # old rows written from another zone
        for r in rows:
            conn.execute(
                "INSERT INTO audit_events (at, actor, action, study_id, outcome, detail)"
                " VALUES (now() - interval '1 day', %s, %s, %s, %s, %s::jsonb)",
                r,
            )


def test_migrating_an_old_database_chains_its_rows(db_url, tmp_path):
    _old_database(db_url)
    store = open_store(db_url, images_dir=tmp_path / "images")
    try:
        report = store.verify_audit_chain()
        assert (report.ok, report.count) == (True, 3), report.problem
        store.audit("dr. b", "view", study_id="s1")
        assert store.verify_audit_chain().count == 4
        assert store.migrate() == []
    finally:
        store.close()


def test_pg_session_time_zone_does_not_change_the_hash(store, db_url):
    if isinstance(store, SqliteStore):
        pytest.skip("PostgreSQL twin only: SQLite stores the UTC text it was given")
    _fill(store, 3)
    dbname = db_url.rsplit("/", 1)[1]
    with store.pg_connection() as conn:
        conn.execute(f"ALTER DATABASE \"{dbname}\" SET timezone = 'America/New_York'")
    fresh = open_store(db_url)  # new connections, new session time zone
    try:
        fresh.audit("dr. c", "view")
        report = fresh.verify_audit_chain()
        assert (report.ok, report.count) == (True, 4), report.problem
    finally:
        fresh.close()


def test_walker_reports_a_row_without_hash():
    walker = ChainWalker()
    assert not walker.feed((7, "t", "a", "view", None, "ok", "{}", None, None))
    assert walker.report().broken_id == 7


# --- medlens audit verify / list -----------------------------------------------------------


def test_cli_verify_ok_then_names_the_edited_entry(store, db_url):
    ids = _fill(store, 5)
    runner = CliRunner()
    ok = runner.invoke(app, ["audit", "verify", "--database-url", db_url])
    assert ok.exit_code == 0, ok.output
    assert "OK: 5 audit entries" in ok.output
    listed = runner.invoke(app, ["audit", "list", "--database-url", db_url, "--study", "s2"])
    assert listed.exit_code == 0 and "\tview\tok\ts2\t" in listed.output
    assert len(listed.output.strip().splitlines()) == 1
    behind_its_back(store, "UPDATE audit_events SET actor = ? WHERE id = ?", ("nobody", ids[1]))
    bad = runner.invoke(app, ["audit", "verify", "--database-url", db_url])
    assert bad.exit_code == 1
    assert f"BROKEN at entry id {ids[1]}" in bad.output and "'nobody'" in bad.output


def test_cli_verify_uses_the_configured_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDLENS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("MEDLENS_DATABASE_URL", raising=False)
    store = open_store(f"sqlite:///{tmp_path / 'data' / 'medlens.db'}")
    _fill(store, 2)
    behind_its_back(store, "DELETE FROM audit_events WHERE id = ?", (_ids(store)[0],))
    store.close()
    proc = subprocess.run(
        [sys.executable, "-m", "medlens.cli.main", "audit", "verify"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "removed" in proc.stdout

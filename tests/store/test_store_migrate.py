"""Named migrations: applied once, in order, atomically; usable by other areas."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from medlens.store.migrate import apply_sqlite_migrations, split_sql
from medlens.store.sqlite import connect

MIGRATIONS = [
    (
        "t_001_cases",
        "CREATE TABLE cases (id INTEGER PRIMARY KEY, label TEXT);"
        "CREATE INDEX cases_label ON cases (label);",
    ),
    ("t_002_seed", lambda c: c.execute("INSERT INTO cases (label) VALUES ('seed')")),
]


def test_applies_once_and_records_names(tmp_path):
    conn = connect(tmp_path / "m.db")
    assert apply_sqlite_migrations(conn, MIGRATIONS) == ["t_001_cases", "t_002_seed"]
    assert apply_sqlite_migrations(conn, MIGRATIONS) == []
    more = [*MIGRATIONS, ("t_003_col", "ALTER TABLE cases ADD COLUMN score REAL")]
    assert apply_sqlite_migrations(conn, more) == ["t_003_col"]
    assert conn.execute("SELECT COUNT(*) FROM cases").fetchone()[0] == 1
    names = [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]
    assert names == ["t_001_cases", "t_002_seed", "t_003_col"]


def test_failing_migration_rolls_back_entirely(tmp_path):
    conn = connect(tmp_path / "m.db")
    bad = [("t_bad", "CREATE TABLE half (x INTEGER); INSERT INTO nowhere VALUES (1);")]
    with pytest.raises(sqlite3.OperationalError):
        apply_sqlite_migrations(conn, bad)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "half" not in tables
    assert conn.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0] == 0


def test_duplicate_names_are_refused(tmp_path):
    with pytest.raises(ValueError):
        apply_sqlite_migrations(connect(tmp_path / "m.db"), [("a", "SELECT 1"), ("a", "SELECT 2")])


def test_concurrent_migrators_apply_each_migration_once(tmp_path):
    applied: list[str] = []
    lock = threading.Lock()

    errors: list[BaseException] = []

    def run() -> None:
        try:
            names = apply_sqlite_migrations(connect(tmp_path / "m.db"), MIGRATIONS)
        except BaseException as exc:
            errors.append(exc)
            return
        with lock:
            applied.extend(names)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(applied) == ["t_001_cases", "t_002_seed"]


def test_split_sql_keeps_trigger_bodies_whole():
    script = """
    CREATE TABLE a (x INTEGER);
    CREATE TRIGGER t BEFORE DELETE ON a BEGIN SELECT RAISE(ABORT, 'no'); END;
    """
    parts = split_sql(script)
    assert len(parts) == 2 and parts[1].endswith("END;")


def test_pg_migrations_apply_once(db_url):
    if db_url.startswith("sqlite"):
        pytest.skip("PostgreSQL twin only")
    import psycopg

    from medlens.store.migrate import apply_pg_migrations

    steps = [
        ("t_001", "CREATE TABLE t (id INT); CREATE INDEX t_id ON t (id);"),
        ("t_002", lambda c: c.execute("INSERT INTO t VALUES (1)")),
    ]
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert apply_pg_migrations(conn, steps) == ["t_001", "t_002"]
        assert apply_pg_migrations(conn, steps) == []
        assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 1

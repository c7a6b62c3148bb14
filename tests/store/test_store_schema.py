"""The store's migrations are append-only: an applied one's SQL never changes."""

from __future__ import annotations

import hashlib

from medlens.store.schema import PG_MIGRATIONS, SQLITE_MIGRATIONS

# sha256 of each migration's SQL as first released; a new migration adds a line here.
RELEASED = {
    ("sqlite", "store_001_initial"): (
        "7ddcddcb4c68406f711aab4d27016312612d813d981f6e779bfb600adbce6a1a"
    ),
    ("pg", "store_001_initial"): "ae37d225b72c821877231ff60b02e2e1396b4fc063b058c32e79348e0f51ef52",
    ("sqlite", "users_001_users_tokens_ownership"): (
        "76f661e761e3886e9c4917bb58bce5dc776212fec89ee0ef2a08286f167f4906"
    ),
    ("pg", "users_001_users_tokens_ownership"): (
        "f04d973aa64544e80d7c7a4fd569f4a085ff830f67734df4978ca6f50360b2c5"
    ),
}


def test_released_migrations_are_unchanged() -> None:
    found = {
        (backend, name): hashlib.sha256(str(sql).encode()).hexdigest()
        for backend, migrations in (("sqlite", SQLITE_MIGRATIONS), ("pg", PG_MIGRATIONS))
        for name, sql in migrations
    }
    assert {key: found.get(key) for key in RELEASED} == RELEASED

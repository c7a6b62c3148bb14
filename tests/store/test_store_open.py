"""open_store: backend chosen by URL scheme; settings give the images folder."""

from __future__ import annotations

import pytest

from medlens.config import load_settings
from medlens.errors import ConfigError, StoreError
from medlens.store import open_store
from medlens.store.postgres import redact_url
from medlens.store.sqlite import SqliteStore


def test_settings_pick_sqlite_in_the_data_dir(tmp_path):
    settings = load_settings(data_dir=tmp_path)
    store = open_store(settings)
    assert isinstance(store, SqliteStore)
    assert store.path == tmp_path / "medlens.db"
    assert store.blobs.root == tmp_path / "images"
    store.close()


def test_unknown_scheme_and_unreachable_server_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="sqlite:///path or postgresql://"):
        open_store("mysql://x/y")
    # Nothing listens on port 9 (discard) of loopback: a one-line error naming the URL.
    with pytest.raises(StoreError, match=r"127\.0\.0\.1:9/db"):
        open_store("postgresql://u:secret@127.0.0.1:9/db")


def test_password_never_appears_in_messages():
    assert redact_url("postgresql://u:secret@h:5432/db") == "postgresql://u:***@h:5432/db"
    try:
        open_store("postgresql://u:secret@127.0.0.1:9/db")
    except StoreError as err:
        assert "secret" not in str(err)


def test_closed_store_refuses_work(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'x.db'}")
    store.close()
    with pytest.raises(StoreError):
        store.list_studies()

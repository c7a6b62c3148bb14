"""`medlens users`: add, list, token (shown once, stored hashed), revoke, passwd, remove."""

from __future__ import annotations

import hashlib
import re

import pytest
from typer.testing import CliRunner

from medlens.cli.main import app
from medlens.store import open_store
from medlens.store.users import verify_password

PASSWORD = "a long enough password"


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDLENS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("MEDLENS_DATABASE_URL", raising=False)
    monkeypatch.delenv("MEDLENS_API_TOKENS", raising=False)
    runner = CliRunner()

    def run(*args: str, stdin: str | None = None, code: int = 0) -> str:
        result = runner.invoke(app, ["users", *args], input=stdin)
        assert result.exit_code == code, (args, result.output, result.exception)
        return result.output

    run.db = f"sqlite:///{tmp_path / 'data' / 'medlens.db'}"  # type: ignore[attr-defined]
    return run


def test_add_list_and_argon2id_hash(cli):
    cli("add", "alice", "--role", "clinician", "--group", "ward-a", "--group", "ward-b",
        "--password-stdin", stdin=PASSWORD + "\n")
    out = cli("add", "adam", "--role", "admin", stdin=f"{PASSWORD}\n{PASSWORD}\n")  # prompted
    assert "added adam (admin" in out
    assert "Password" in out and PASSWORD not in out  # hidden input, asked twice
    cli("add", "alice", "--role", "admin", "--password-stdin", stdin=PASSWORD + "\n", code=2)
    cli("add", "bob", "--role", "boss", "--password-stdin", stdin=PASSWORD + "\n", code=2)
    cli("add", "carl", "--role", "admin", "--password-stdin", stdin="short\n", code=2)
    cli("add", "mlt_x", "--role", "admin", "--password-stdin", stdin=PASSWORD + "\n", code=2)
    listing = cli("list")
    assert re.search(r"alice\s+clinician\s+ward-a,ward-b\s+set", listing)
    assert re.search(r"adam\s+admin\s+-\s+set", listing)
    store = open_store(cli.db)
    try:
        alice = store.get_user_by_name("alice")
        assert alice.password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
        assert verify_password(alice.password_hash, PASSWORD)
        audit = [(e.actor, e.action) for e in store.list_audit()]
        assert ("cli", "user_add") in audit
    finally:
        store.close()


def test_token_is_shown_once_stored_hashed_and_revocable(cli):
    cli("add", "rita", "--role", "radiologist", "--password-stdin", stdin=PASSWORD + "\n")
    first = cli("token", "rita").strip().splitlines()[-1]
    second = cli("token", "rita").strip().splitlines()[-1]
    assert first != second and first.startswith("mlt_") and len(first) >= 4 + 43
    listing = cli("list")
    assert first not in listing and first[:12] in listing and second[:12] in listing
    store = open_store(cli.db)
    try:
        with store._read() as c:
            dump = repr(c.execute("SELECT * FROM api_tokens").fetchall())
            dump += repr(c.execute("SELECT * FROM audit_events").fetchall())
        assert first not in dump and hashlib.sha256(first.encode()).hexdigest() in dump
        assert "revoked 1 token(s)" in cli("revoke", first[:12])
        assert store.user_for_token(hashlib.sha256(first.encode()).hexdigest()) is None
        assert store.user_for_token(hashlib.sha256(second.encode()).hexdigest()) is not None
        assert "revoked 1 token(s)" in cli("revoke", "rita")
        assert store.user_for_token(hashlib.sha256(second.encode()).hexdigest()) is None
        cli("revoke", "mlt_", code=2)  # too short a prefix: would revoke everyone's
        cli("revoke", "nobody", code=2)
        cli("token", "nobody", code=2)
    finally:
        store.close()


def test_passwd_and_remove(cli):
    cli("add", "dave", "--role", "clinician", "--password-stdin", stdin=PASSWORD + "\n")
    token = cli("token", "dave").strip().splitlines()[-1]
    cli("passwd", "dave", "--password-stdin", stdin="a brand new password\n")
    store = open_store(cli.db)
    try:
        assert verify_password(store.get_user_by_name("dave").password_hash, "a brand new password")
        cli("remove", "dave", "--yes")
        assert store.get_user_by_name("dave") is None
        assert store.user_for_token(hashlib.sha256(token.encode()).hexdigest()) is None
    finally:
        store.close()

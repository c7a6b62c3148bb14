"""Users, tokens and study ownership in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import re

import pytest

from medlens.errors import ConfigError, Conflict
from medlens.store import users as U


def test_users_round_trip_and_names_are_unique(store):
    assert not store.has_users()
    alice = store.create_user("alice", "clinician", ["ward-a"], None)
    assert store.has_users()
    assert store.get_user(alice.id) == alice
    assert store.get_user_by_name("alice") == alice
    assert alice.groups == ("ward-a",) and alice.role == "clinician"
    with pytest.raises(Conflict):
        store.create_user("alice", "admin", [], None)
    with pytest.raises(Exception, match=r"(?i)check|constraint"):
        store.create_user("eve", "superuser", [], None)
    store.create_user("bob", "radiologist", ["ward-a", "ward-b"], None)
    assert [u.name for u in store.list_users()] == ["alice", "bob"]
    assert store.set_password(alice.id, "h") and store.get_user(alice.id).password_hash == "h"
    assert store.delete_user(alice.id) and store.get_user(alice.id) is None
    assert not store.delete_user(alice.id)


def test_token_is_stored_only_as_its_hash_and_revokes_at_once(store, db_url):
    user = store.create_user("carol", "admin", [], None)
    token, sha, prefix = U.new_token()
    assert len(token) >= 4 + 43 and prefix == token[:12]  # 32 random bytes, base64url
    saved = store.add_token(user.id, sha, prefix)
    found = store.user_for_token(U.token_sha256(token))
    assert found is not None and found[0] == user and found[1] == saved
    assert store.token_active(saved.id)
    # The database holds the hash and the prefix, never the token itself.
    with store._read() as c:
        dump = repr(c.execute("SELECT * FROM api_tokens").fetchall())
    assert token not in dump and sha in dump
    fixed = store.add_token(user.id, "f" * 64, "mlt_Abcdefgh")
    assert store.revoke_tokens(prefix="mlt_A_cd") == 0  # '_' is no wildcard here
    assert store.revoke_tokens(prefix="mlt_Abcd") == 1 and not store.token_active(fixed.id)
    assert store.revoke_tokens(prefix=prefix[:10]) == 1
    assert store.user_for_token(sha) is None and not store.token_active(saved.id)
    assert store.list_tokens(user.id)[0].revoked_at is not None
    # Revoke all of a user's tokens.
    for _ in range(2):
        t = U.new_token()
        store.add_token(user.id, t[1], t[2])
    assert store.revoke_tokens(user_id=user.id) == 2
    assert store.revoke_tokens(user_id=user.id) == 0


def test_removing_a_user_removes_their_tokens(store):
    user = store.create_user("dan", "clinician", [], None)
    _token, sha, prefix = U.new_token()
    store.add_token(user.id, sha, prefix)
    store.delete_user(user.id)
    assert store.user_for_token(sha) is None and store.list_tokens(user.id) == []


def test_ownership_and_visible_listing(store, new_image):
    a, _ = store.create_study([new_image(b"one")], {}, owner="user:u1")
    b, _ = store.create_study([new_image(b"two")], {}, owner="user:u2")
    c, _ = store.create_study([new_image(b"three")], {})
    assert store.set_study_owner(a.id, "u1", "ward-a")
    assert store.set_study_owner(b.id, "u2", "ward-b")
    assert not store.set_study_owner(a.id, "u2", "ward-b")  # the first owner stays
    got = store.get_study(a.id)
    assert (got.owner_id, got.group) == ("u1", "ward-a")
    assert store.get_study(c.id).owner_id is None
    ids = lambda rows: {s.id for s in rows}  # noqa: E731
    assert ids(store.list_visible_studies(user_id="u1")) == {a.id}
    assert ids(store.list_visible_studies(user_id="u1", groups=["ward-b"])) == {a.id, b.id}
    assert ids(store.list_visible_studies(user_id="u3", groups=["ward-b", "x"])) == {b.id}
    assert ids(store.list_visible_studies(user_id="u3")) == set()
    assert len(store.list_visible_studies(user_id="u1", groups=["ward-b"], limit=1)) == 1
    assert store.study_access(b.id) == ("u2", "ward-b") and store.study_access("nope") is None


def test_passwords_are_argon2id_with_the_documented_parameters():
    h = U.hash_password("correct horse battery")
    assert re.fullmatch(r"\$argon2id\$v=19\$m=65536,t=3,p=4\$[^$]+\$[^$]+", h), h
    assert U.verify_password(h, "correct horse battery")
    assert not U.verify_password(h, "wrong horse battery")
    assert not U.verify_password(None, "anything at all")
    assert not U.verify_password("not-a-hash", "anything at all")
    assert U.hash_password("correct horse battery") != h  # salted
    with pytest.raises(ConfigError, match="too short"):
        U.hash_password("short")

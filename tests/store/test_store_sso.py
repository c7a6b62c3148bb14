"""Users signed in by an OpenID provider: keyed by (issuer, subject), on both backends."""

from __future__ import annotations

ISSUER = "https://idp.example.org"


def test_first_sign_in_creates_a_passwordless_user_later_ones_update_it(store):
    first = store.sso_user(ISSUER, "sub-1", name="alice", role="clinician", groups=["ward-a"])
    assert (first.name, first.role, first.groups) == ("alice", "clinician", ("ward-a",))
    assert first.password_hash is None  # only the provider can sign this user in
    # The provider changed the role and groups: the next sign-in applies them, same user.
    again = store.sso_user(ISSUER, "sub-1", name="renamed", role="radiologist", groups=[])
    assert again.id == first.id and again.name == "alice"
    assert (again.role, again.groups) == ("radiologist", ())
    assert store.get_user(first.id) == again


def test_same_subject_at_another_issuer_is_another_user(store):
    a = store.sso_user(ISSUER, "sub-1", name="sam", role="clinician", groups=[])
    b = store.sso_user("https://other.example.org", "sub-1", name="sam", role="admin", groups=[])
    assert a.id != b.id and a.role == "clinician"
    assert b.name.startswith("sam~") and b.name != a.name


def test_sso_never_takes_over_a_local_account_with_the_same_name(store):
    local = store.create_user("bob", "admin", [], "argon2-hash")
    sso = store.sso_user(ISSUER, "sub-bob", name="bob", role="clinician", groups=[])
    assert sso.id != local.id and sso.name.startswith("bob~")
    assert store.get_user(local.id) == local  # untouched: still an admin with a password


def test_deleting_the_user_forgets_the_identity(store):
    user = store.sso_user(ISSUER, "sub-2", name="dora", role="clinician", groups=[])
    assert store.delete_user(user.id)
    fresh = store.sso_user(ISSUER, "sub-2", name="dora", role="clinician", groups=[])
    assert fresh.id != user.id and fresh.name == "dora"

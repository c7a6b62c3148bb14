"""Users signed in by an OpenID provider, on both backends (mixed into `SqlStore`).

A provider's (issuer, subject) pair maps to one user. At every sign-in the user's role
and groups are set from the provider's claims, so the provider stays the source of truth:
a role taken away there is gone here at the next sign-in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from medlens.store import rows as R
from medlens.store.sqlparts import SqlParts
from medlens.store.usersql import User

_COLUMNS = "id, name, role, groups, password_hash, created_at"


class SsoSql(SqlParts):
    if TYPE_CHECKING:  # supplied by SqlStore, UsersSql and the dialects

        def _user(self, row: Sequence[Any]) -> User: ...

    def sso_user(
        self, issuer: str, subject: str, *, name: str, role: str, groups: Sequence[str]
    ) -> User:
        """The user linked to (issuer, subject), created on first sign-in, else updated.

        `name` is only used when creating; a name already taken (say, a local user with a
        password) gets a short suffix instead: an SSO login never takes over another account.
        """
        for attempt in range(2):
            try:
                return self._sso_user(issuer, subject, name, role, groups)
            except Exception as exc:
                # Two first sign-ins at once: the loser retries and finds the winner's row.
                if attempt or not self._is_unique_violation(exc):
                    raise
        raise AssertionError("unreachable")

    def _sso_user(
        self, issuer: str, subject: str, name: str, role: str, groups: Sequence[str]
    ) -> User:
        with self._write() as c:
            found = c.execute(
                "SELECT user_id FROM oidc_identities WHERE issuer = ? AND subject = ?",
                (issuer, subject),
            ).fetchone()
            if found is not None:
                c.execute(
                    "UPDATE users SET role = ?, groups = ? WHERE id = ?",
                    (role, self._json_in(list(groups)), found[0]),
                )
                user_id = found[0]
            else:
                user_id = R.new_id()
                taken = c.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone()
                if taken is not None:
                    tag = hashlib.sha256(f"{issuer}|{subject}".encode()).hexdigest()[:6]
                    name = f"{name}~{tag}"
                c.execute(
                    f"INSERT INTO users ({_COLUMNS}) VALUES (?, ?, ?, ?, NULL, ?)",
                    (user_id, name, role, self._json_in(list(groups)), self._ts(self._now(c))),
                )
                c.execute(
                    "INSERT INTO oidc_identities (issuer, subject, user_id) VALUES (?, ?, ?)",
                    (issuer, subject, user_id),
                )
            row = c.execute(f"SELECT {_COLUMNS} FROM users WHERE id = ?", (user_id,)).fetchone()
            return self._user(row)

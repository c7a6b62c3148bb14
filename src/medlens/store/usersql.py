"""Users, API tokens and study ownership, on both backends (mixed into `SqlStore`).

The store keeps only hashes: Argon2id for passwords (made in `store/users.py`), SHA-256
for API tokens (a token carries 256 random bits, so a fast hash is enough and lookups
stay one indexed query). Visibility rules live in the server (`services/access.py`);
`list_visible_studies` is their SQL twin, so a listing never loads others' studies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from medlens.errors import Conflict
from medlens.store import rows as R
from medlens.store.sqlparts import SqlParts

if TYPE_CHECKING:
    from medlens.store.base import Study

_USER_COLUMNS = "id, name, role, groups, password_hash, created_at"
_TOKEN_COLUMNS = "id, user_id, prefix, created_at, revoked_at"


@dataclass(frozen=True)
class User:
    id: str
    name: str
    role: str  # clinician | radiologist | admin
    groups: tuple[str, ...]
    password_hash: str | None
    created_at: str


@dataclass(frozen=True)
class ApiToken:
    id: str
    user_id: str
    prefix: str  # the token's first characters: enough to name it, useless to use it
    created_at: str
    revoked_at: str | None


class UsersSql(SqlParts):
    if TYPE_CHECKING:  # supplied by SqlStore and the dialects

        def _load_study(self, c: Any, row: Sequence[Any]) -> Study: ...

    def _user(self, row: Sequence[Any]) -> User:
        return User(
            id=row[0],
            name=row[1],
            role=row[2],
            groups=tuple(self._json_out(row[3]) or ()),
            password_hash=row[4],
            created_at=self._iso(row[5]),
        )

    def _token(self, row: Sequence[Any]) -> ApiToken:
        return ApiToken(
            id=row[0],
            user_id=row[1],
            prefix=row[2],
            created_at=self._iso(row[3]),
            revoked_at=self._iso(row[4]) if row[4] is not None else None,
        )

    # --- users -----------------------------------------------------------------
    def create_user(
        self, name: str, role: str, groups: Sequence[str], password_hash: str | None
    ) -> User:
        try:
            with self._write() as c:
                user_id = R.new_id()
                c.execute(
                    f"INSERT INTO users ({_USER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        user_id,
                        name,
                        role,
                        self._json_in(list(groups)),
                        password_hash,
                        self._ts(self._now(c)),
                    ),
                )
                row = c.execute(
                    f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", (user_id,)
                ).fetchone()
                return self._user(row)
        except Exception as exc:
            if self._is_unique_violation(exc):
                raise Conflict(f"A user named {name!r} already exists.") from None
            raise

    def _user_where(self, where: str, value: str) -> User | None:
        with self._read() as c:
            row = c.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE {where}", (value,)).fetchone()
        return self._user(row) if row else None

    def get_user(self, user_id: str) -> User | None:
        return self._user_where("id = ?", user_id)

    def get_user_by_name(self, name: str) -> User | None:
        return self._user_where("name = ?", name)

    def list_users(self) -> list[User]:
        with self._read() as c:
            found = c.execute(f"SELECT {_USER_COLUMNS} FROM users ORDER BY name").fetchall()
        return [self._user(r) for r in found]

    def has_users(self) -> bool:
        with self._read() as c:
            return c.execute("SELECT 1 FROM users LIMIT 1").fetchone() is not None

    def set_password(self, user_id: str, password_hash: str) -> bool:
        with self._write() as c:
            cur = c.execute(
                "UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id)
            )
            return cur.rowcount > 0

    def delete_user(self, user_id: str) -> bool:
        """Remove a user and their tokens; their studies stay (visible to admins)."""
        with self._write() as c:
            c.execute("DELETE FROM api_tokens WHERE user_id = ?", (user_id,))
            return c.execute("DELETE FROM users WHERE id = ?", (user_id,)).rowcount > 0

    # --- tokens ------------------------------------------------------------------
    def add_token(self, user_id: str, token_sha256: str, prefix: str) -> ApiToken:
        with self._write() as c:
            token_id = R.new_id()
            c.execute(
                "INSERT INTO api_tokens (id, user_id, prefix, token_sha256, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (token_id, user_id, prefix, token_sha256, self._ts(self._now(c))),
            )
            row = c.execute(
                f"SELECT {_TOKEN_COLUMNS} FROM api_tokens WHERE id = ?", (token_id,)
            ).fetchone()
            return self._token(row)

    def user_for_token(self, token_sha256: str) -> tuple[User, ApiToken] | None:
        """The user owning an active (not revoked) token, with that token."""
        with self._read() as c:
            row = c.execute(
                f"SELECT {_TOKEN_COLUMNS} FROM api_tokens"
                " WHERE token_sha256 = ? AND revoked_at IS NULL",
                (token_sha256,),
            ).fetchone()
            if row is None:
                return None
            user = c.execute(
                f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", (row[1],)
            ).fetchone()
        return (self._user(user), self._token(row)) if user else None

    def token_active(self, token_id: str) -> bool:
        with self._read() as c:
            row = c.execute(
                "SELECT 1 FROM api_tokens WHERE id = ? AND revoked_at IS NULL", (token_id,)
            ).fetchone()
        return row is not None

    def list_tokens(self, user_id: str) -> list[ApiToken]:
        with self._read() as c:
            found = c.execute(
                f"SELECT {_TOKEN_COLUMNS} FROM api_tokens WHERE user_id = ? ORDER BY created_at",
                (user_id,),
            ).fetchall()
        return [self._token(r) for r in found]

    def revoke_tokens(self, *, user_id: str | None = None, prefix: str | None = None) -> int:
        """Revoke a user's active tokens, or those whose prefix starts with `prefix`."""
        if (user_id is None) == (prefix is None):
            raise ValueError("give exactly one of user_id or prefix")
        # substr, not LIKE: '_' is both a LIKE wildcard and a token character.
        where, args = (
            ("user_id = ?", (user_id,))
            if user_id
            else ("substr(prefix, 1, ?) = ?", (len(str(prefix)), prefix))
        )
        with self._write() as c:
            now = self._ts(self._now(c))
            cur = c.execute(
                f"UPDATE api_tokens SET revoked_at = ? WHERE {where} AND revoked_at IS NULL",
                (now, *args),
            )
            return int(cur.rowcount)

    # --- ownership ---------------------------------------------------------------
    def set_study_owner(self, study_id: str, owner_id: str, group: str | None) -> bool:
        """Record who uploaded a study; a study keeps its first owner."""
        with self._write() as c:
            cur = c.execute(
                'UPDATE studies SET owner_id = ?, "group" = ? WHERE id = ? AND owner_id IS NULL',
                (owner_id, group, study_id),
            )
            return cur.rowcount > 0

    def study_access(self, study_id: str) -> tuple[str | None, str | None] | None:
        """(owner_id, group) of a study, None when there is no such study."""
        with self._read() as c:
            row = c.execute(
                'SELECT owner_id, "group" FROM studies WHERE id = ?', (study_id,)
            ).fetchone()
        return (row[0], row[1]) if row else None

    def list_visible_studies(
        self,
        *,
        user_id: str,
        groups: Sequence[str] = (),
        limit: int = 50,
        offset: int = 0,
    ) -> list[Study]:
        """The studies `user_id` owns or that belong to one of `groups`, newest first."""
        marks = ", ".join("?" for _ in groups)
        in_groups = f' OR "group" IN ({marks})' if groups else ""
        with self._read() as c:
            found = c.execute(
                f"SELECT {R.STUDY_COLUMNS} FROM studies WHERE (owner_id = ?{in_groups})"
                " ORDER BY created_at DESC, id LIMIT ? OFFSET ?",
                (user_id, *groups, int(limit), int(offset)),
            ).fetchall()
            return [self._load_study(c, row) for row in found]

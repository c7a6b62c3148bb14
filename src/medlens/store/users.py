"""Credentials for the users kept in the store: Argon2id passwords and API tokens.

Shared by `medlens users` (CLI) and the server's login. Passwords: argon2-cffi's
PasswordHasher (Argon2id, RFC 9106 low-memory profile: t=3, m=64 MiB, p=4). Tokens:
32 random bytes, URL-safe, prefixed `mlt_` so a leaked one is recognisable in logs or
code scanners; only their SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import secrets
from functools import cache
from typing import Any

TOKEN_PREFIX = "mlt_"
TOKEN_BYTES = 32
SHOWN_PREFIX_CHARS = 12  # "mlt_" + 8 characters: names a token without revealing it
MIN_PASSWORD_CHARS = 8
# A stand-in hash for unknown names, so a login takes as long whether or not the
# name exists (no user enumeration by timing).
_DUMMY_PASSWORD = "medlens-no-such-user"


@cache
def _hasher() -> Any:
    from argon2 import PasswordHasher

    return PasswordHasher()  # Argon2id with the library's (RFC 9106) defaults


def hash_password(password: str) -> str:
    """An Argon2id hash string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`)."""
    if len(password) < MIN_PASSWORD_CHARS:
        from medlens.errors import ConfigError

        raise ConfigError(f"The password is too short (at least {MIN_PASSWORD_CHARS} characters).")
    return str(_hasher().hash(password))


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when `password` matches; an absent hash still costs one verification."""
    from argon2.exceptions import InvalidHashError, VerificationError

    target = password_hash or _dummy_hash()
    try:
        ok = bool(_hasher().verify(target, password))
    except (VerificationError, InvalidHashError):
        return False
    return ok and password_hash is not None


def needs_rehash(password_hash: str) -> bool:
    return bool(_hasher().check_needs_rehash(password_hash))


@cache
def _dummy_hash() -> str:
    return str(_hasher().hash(_DUMMY_PASSWORD))


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str, str]:
    """(token to show once, its SHA-256 to store, its prefix to name it by)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    return token, token_sha256(token), token[:SHOWN_PREFIX_CHARS]


def is_user_token(token: str) -> bool:
    return token.startswith(TOKEN_PREFIX)

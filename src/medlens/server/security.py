"""Who is calling, and may they: bearer tokens, page sessions, CSRF, bind address.

Rules (see docs/server.md):
- API clients send `Authorization: Bearer <token>` (a user's token, or one of
  MEDLENS_API_TOKENS, which act as admin); with auth on (tokens configured or any user in
  the store, see accounts.py) a missing credential is 401 and a wrong one 403.
- The page uses a signed session cookie (SameSite=Strict, HttpOnly) and sends the CSRF
  token in `X-CSRF-Token` on every unsafe request; with tokens configured the session is
  only authenticated after logging in with a token.
- With no tokens configured the server must be on loopback (enforced at start) and only
  answers to loopback Host names, which defeats DNS rebinding; cross-origin unsafe
  requests are refused by their Origin header.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request

from medlens.config import Settings
from medlens.errors import ConfigError

SESSION_COOKIE = "medlens_session"
CSRF_HEADER = "x-csrf-token"
SESSION_TTL_S = 12 * 3600
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, settings: Settings, *, has_users: bool = False) -> None:
    """Refuse a non-loopback bind address unless auth is on (API tokens or users)."""
    auth_on = bool(settings.api_tokens or settings.oidc_issuer) or has_users
    if not is_loopback(host) and not auth_on:
        raise ConfigError(
            f"Refusing to listen on {host}: without an API token anyone on the network could "
            "read studies. Add a user (`medlens users add NAME --role admin`), set "
            "MEDLENS_API_TOKENS (comma list) or bind to 127.0.0.1."
        )


Role = str  # "clinician" | "radiologist" | "admin"
ROLES = ("clinician", "radiologist", "admin")


@dataclass(frozen=True)
class Actor:
    """The caller, as written to the audit log and used as the rate-limit key.

    `user_id` is None for the single-user modes (loopback without auth, and the bootstrap
    MEDLENS_API_TOKENS), which act as an admin; a user's actor carries their role and groups.
    """

    name: str  # "token:<hash8>", "session:<sid8>", "local", or a user's name
    kind: str  # token | session | local
    session_id: str | None = None
    user_id: str | None = None
    role: Role = "admin"
    groups: tuple[str, ...] = ()


class Sessions:
    """HMAC-signed session cookies; no server-side state needed."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _sign(self, payload: bytes) -> str:
        return hmac.new(self._secret, payload, hashlib.sha256).hexdigest()

    def issue(self, actor: str | None, extra: dict[str, Any] | None = None) -> tuple[str, str]:
        """New session: (cookie value, session id). `extra`: e.g. a user's id ("uid")."""
        sid = secrets.token_urlsafe(18)
        fields = {**(extra or {}), "sid": sid, "actor": actor}
        body = json.dumps({**fields, "exp": int(time.time()) + SESSION_TTL_S})
        raw = base64.urlsafe_b64encode(body.encode()).decode()
        return f"{raw}.{self._sign(raw.encode())}", sid

    def read(self, cookie: str | None) -> dict[str, Any] | None:
        if not cookie or "." not in cookie:
            return None
        raw, sig = cookie.rsplit(".", 1)
        if not hmac.compare_digest(sig, self._sign(raw.encode())):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(raw.encode()))
        except (ValueError, json.JSONDecodeError):
            return None
        if not isinstance(data, dict) or int(data.get("exp", 0)) < time.time():
            return None
        return data

    def csrf_token(self, sid: str) -> str:
        return self._sign(f"csrf:{sid}".encode())


def session_secret(settings: Settings) -> bytes:
    """The configured secret, else one generated once and kept (0600) in the data dir."""
    configured = getattr(settings, "session_secret", None)
    if configured is not None:
        return configured.get_secret_value().encode()
    path: Path = settings.data_path / "session.key"
    if path.is_file():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


def token_actor(token: str, settings: Settings) -> Actor | None:
    for configured in settings.api_tokens:
        if hmac.compare_digest(token.encode(), configured.get_secret_value().encode()):
            digest = hashlib.sha256(token.encode()).hexdigest()[:8]
            return Actor(name=f"token:{digest}", kind="token")
    return None


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1].rstrip("/") == host


def authenticate(request: Request) -> Actor:
    """The API's one gate (used as a FastAPI dependency via `api_actor`).

    Queries the store (users, tokens): call it from a worker thread.
    """
    from medlens.server import accounts  # imports this module: resolved at call time

    state = request.app.state.medlens
    settings: Settings = request.app.state.settings
    sessions: Sessions = request.app.state.sessions
    unsafe = request.method not in _SAFE_METHODS
    if unsafe and not _same_origin(request):
        raise HTTPException(403, "Cross-origin request refused.")
    auth_on = accounts.auth_enabled(state)
    header = request.headers.get("authorization")
    if header is not None and auth_on:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPException(
                401,
                "Malformed Authorization header: use 'Bearer <token>'.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        found = accounts.bearer_actor(state, token.strip())
        if found is None:
            raise HTTPException(403, "This API token is not valid.")
        return found[0]
    session = sessions.read(request.cookies.get(SESSION_COOKIE))
    actor = accounts.session_actor(state, session, auth_on) if session is not None else None
    if session is not None and actor is not None:
        if unsafe and not hmac.compare_digest(
            request.headers.get(CSRF_HEADER, ""), sessions.csrf_token(session["sid"])
        ):
            raise HTTPException(403, "Missing or wrong CSRF token; reload the page.")
        return actor
    # Without auth only a loopback server answers, as its one local user.
    if auth_on or not is_loopback(settings.host):
        raise HTTPException(
            401,
            "Authentication required: send 'Authorization: Bearer <token>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return Actor(name="local", kind="local")


def host_allowed(host_header: str, settings: Settings) -> bool:
    """Without tokens, answer only to loopback names (DNS-rebinding defence).

    A non-loopback bind was only allowed with auth on (`check_bind`), and `authenticate`
    refuses the token-less local mode there, so its Host names need no check.
    """
    if settings.api_tokens or not is_loopback(settings.host):
        return True
    host = (
        host_header.rsplit(":", 1)[0]
        if not host_header.startswith("[")
        else (host_header.split("]", 1)[0] + "]")
    )
    return host in _LOOPBACK_NAMES or is_loopback(host)


CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)

SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]

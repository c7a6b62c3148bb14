"""Who a credential belongs to: users from the store, bootstrap tokens, page sessions.

Auth is on when MEDLENS_API_TOKENS is set or the store has any user; with neither, a
loopback server keeps its single-user mode (actor "local", an admin). A session cookie
carries only the user's id: the actor is rebuilt from the store on every request, so a
removed user, a revoked token or a changed password ends their sessions at once.
All functions here query the store: call them from a worker thread.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from medlens.server.security import Actor, is_loopback, token_actor
from medlens.server.state import ServerState
from medlens.store.users import is_user_token, token_sha256, verify_password


def auth_enabled(state: ServerState) -> bool:
    # Single sign-on on: everyone must sign in, even before the first user exists.
    settings = state.settings
    return bool(settings.api_tokens or settings.oidc_issuer) or bool(state.store.has_users())


def user_actor(user: Any, kind: str, session_id: str | None = None) -> Actor:
    return Actor(
        name=user.name,
        kind=kind,
        session_id=session_id,
        user_id=user.id,
        role=user.role,
        groups=tuple(user.groups),
    )


def bearer_actor(state: ServerState, token: str) -> tuple[Actor, str | None] | None:
    """(actor, user token id or None for a bootstrap token), or None for a bad token."""
    actor = token_actor(token, state.settings)
    if actor is not None:
        return actor, None
    if not is_user_token(token):
        return None
    found = state.store.user_for_token(token_sha256(token))
    if found is None:
        return None
    user, row = found
    return user_actor(user, "token"), row.id


def password_fingerprint(password_hash: str | None) -> str:
    # Ties a password session to the hash it logged in with: `users passwd` ends it.
    return hashlib.sha256((password_hash or "").encode()).hexdigest()[:16]


def password_actor(state: ServerState, name: str, password: str) -> tuple[Actor, str] | None:
    """(actor, password fingerprint) when name and password match a user."""
    user = state.store.get_user_by_name(name) if name else None
    if not verify_password(user.password_hash if user else None, password) or user is None:
        return None
    return user_actor(user, "session"), password_fingerprint(user.password_hash)


def _bootstrap_names(state: ServerState) -> set[str]:
    names = set()
    for configured in state.settings.api_tokens:
        actor = token_actor(configured.get_secret_value(), state.settings)
        if actor is not None:
            names.add(actor.name)
    return names


def session_actor(state: ServerState, session: dict[str, Any], auth_on: bool) -> Actor | None:
    """The actor behind a valid session cookie, or None when it authenticates nobody."""
    sid = session["sid"]
    uid = session.get("uid")
    if uid:
        user = state.store.get_user(uid)
        if user is None:
            return None
        tid = session.get("tid")
        if tid and not state.store.token_active(tid):
            return None
        pv = session.get("pv")
        if pv and not hmac.compare_digest(pv, password_fingerprint(user.password_hash)):
            return None
        return user_actor(user, "session", sid)
    name = session.get("actor")
    # A bootstrap-token session lasts only while that token is still configured.
    if name and name in _bootstrap_names(state):
        return Actor(name=name, kind="session", session_id=sid)
    if not auth_on and is_loopback(state.settings.host):  # the single-user mode
        return Actor(name=f"session:{sid[:8]}", kind="session", session_id=sid)
    return None


def login(
    state: ServerState, *, name: str, password: str, token: str
) -> tuple[Actor, dict[str, Any]] | None:
    """The page's login: name + password, or a token. (actor, session fields) or None."""
    if name or password:
        found = password_actor(state, name.strip(), password)
        if found is None:
            return None
        actor, fingerprint = found
        return actor, {"uid": actor.user_id, "pv": fingerprint}
    if not token.strip() or not auth_enabled(state):
        return None
    by_token = bearer_actor(state, token.strip())
    if by_token is None:
        return None
    actor, token_id = by_token
    return actor, ({"uid": actor.user_id, "tid": token_id} if token_id else {})

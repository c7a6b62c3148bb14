"""Single sign-on with OpenID Connect: the authorization-code flow with PKCE, via Authlib.

1. `start`: discovery (`<issuer>/.well-known/openid-configuration`), then a redirect to the
   provider with `state`, `nonce` and an S256 code challenge. The three secrets travel in
   a short-lived signed cookie (SameSite=Lax: the provider's redirect back is a cross-site
   navigation, which never carries the Strict session cookie).
2. `finish`: `state` checked, the code exchanged (with the PKCE verifier), the ID token's
   signature checked against the provider's JWKS and its iss/aud/exp/iat/nonce validated.
3. `sign_in`: the role comes from a configured claim (unknown or absent: refused, unless a
   default role is set), the user is created or updated in the store, keyed by
   (issuer, subject), and gets the normal MedLens session.
Any failure is an `SsoError` with a message for the page; never a stack trace.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

from fastapi import Request

from medlens.config import Settings
from medlens.server import accounts
from medlens.server.security import ROLES, Actor
from medlens.server.state import ServerState

FLOW_COOKIE = "medlens_oidc"
FLOW_TTL_S = 600  # time to finish signing in at the provider
LOGIN_PATH = "/auth/oidc/login"
CALLBACK_PATH = "/auth/oidc/callback"
HTTP_TIMEOUT_S = 10.0
_CLIENT_KEY = "oidc_client"
_ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}  # clinician < ... < admin


class SsoError(Exception):
    """A sign-in that cannot complete: `message` is shown, `reason` goes to the audit log."""

    def __init__(self, message: str, *, status: int = 403, reason: str = "refused") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason


def enabled(settings: Settings) -> bool:
    return bool(settings.oidc_issuer)


def _issuer(settings: Settings) -> str:
    return (settings.oidc_issuer or "").rstrip("/")


def _client(state: ServerState) -> Any:
    """The app's Authlib client (it caches the provider's metadata and JWKS)."""
    client = state.extra.get(_CLIENT_KEY)
    if client is None:
        from authlib.integrations.starlette_client import OAuth

        settings = state.settings
        secret = settings.oidc_client_secret
        client = OAuth().register(
            "medlens",
            client_id=settings.oidc_client_id,
            client_secret=secret.get_secret_value() if secret else None,
            server_metadata_url=f"{_issuer(settings)}/.well-known/openid-configuration",
            client_kwargs={
                "scope": settings.oidc_scopes,
                "code_challenge_method": "S256",
                # A public client (no secret) proves itself with PKCE alone.
                "token_endpoint_auth_method": "client_secret_basic" if secret else "none",
                "timeout": HTTP_TIMEOUT_S,
            },
        )
        state.extra[_CLIENT_KEY] = client
    return client


def redirect_uri(settings: Settings, request: Request) -> str:
    base = settings.oidc_redirect_base or str(request.base_url)
    return base.rstrip("/") + CALLBACK_PATH


def _http_errors() -> tuple[type[BaseException], ...]:
    # Authlib's httpx client runs on httpx2 where installed (huggingface-hub brings it).
    import httpx

    found: list[type[BaseException]] = [httpx.HTTPError]
    try:
        import httpx2

        found.append(httpx2.HTTPError)
    except ImportError:
        pass
    return tuple(found)


def _provider_errors() -> tuple[type[BaseException], ...]:
    from authlib.common.errors import AuthlibBaseError
    from joserfc.errors import JoseError

    return (*_http_errors(), AuthlibBaseError, JoseError, ValueError, KeyError, RuntimeError)


def _as_sso_error(exc: BaseException) -> SsoError:
    if isinstance(exc, _http_errors()):
        return SsoError(
            "The sign-in provider cannot be reached right now. Try again later, or sign in "
            "with a MedLens account.",
            status=502,
            reason="provider_unreachable",
        )
    return SsoError(
        "The sign-in provider's answer could not be verified, so you were not signed in.",
        reason=f"invalid_response:{type(exc).__name__}",
    )


async def _metadata(client: Any, settings: Settings) -> dict[str, Any]:
    metadata = dict(await client.load_server_metadata())
    # Discovery must describe the configured issuer (OpenID Connect Discovery 1.0, 4.3).
    if str(metadata.get("issuer", "")).rstrip("/") != _issuer(settings):
        raise ValueError("discovery issuer mismatch")
    return metadata


async def start(state: ServerState, request: Request) -> tuple[str, str]:
    """(the provider's authorization URL, the signed flow cookie)."""
    client = _client(state)
    try:
        await _metadata(client, state.settings)
        made = await client.create_authorization_url(redirect_uri(state.settings, request))
    except _provider_errors() as exc:
        raise _as_sso_error(exc) from None
    flow = {
        "purpose": "oidc",
        "state": made["state"],
        "nonce": made["nonce"],
        "cv": made["code_verifier"],
        "until": int(time.time()) + FLOW_TTL_S,
    }
    cookie, _sid = state.sessions.issue(None, flow)
    return made["url"], cookie


def read_flow(state: ServerState, cookie: str | None) -> dict[str, Any] | None:
    data = state.sessions.read(cookie)
    if data is None or data.get("purpose") != "oidc" or int(data.get("until", 0)) < time.time():
        return None
    return data


def _check_callback(flow: dict[str, Any] | None, params: dict[str, str]) -> dict[str, Any]:
    if flow is None:
        raise SsoError(
            "This sign-in took too long or was started elsewhere. Please start again.",
            status=400,
            reason="no_flow",
        )
    if "error" in params:
        raise SsoError("The sign-in provider did not sign you in.", reason="provider_denied")
    if not hmac.compare_digest(params.get("state", ""), str(flow["state"])):
        raise SsoError(
            "This sign-in answer does not match the sign-in you started.",
            status=400,
            reason="state_mismatch",
        )
    if not params.get("code"):
        raise SsoError("The sign-in provider sent no code.", status=400, reason="no_code")
    return flow


async def finish(
    state: ServerState, request: Request, flow: dict[str, Any] | None
) -> dict[str, Any]:
    """The validated ID token claims (merged with userinfo when the role is only there)."""
    params = dict(request.query_params)
    flow = _check_callback(flow, params)
    client = _client(state)
    settings = state.settings
    # RFC 9207: a provider that names itself must be ours (defeats IdP mix-up).
    if "iss" in params and params["iss"].rstrip("/") != _issuer(settings):
        raise SsoError("This sign-in answer came from another provider.", reason="iss_mismatch")
    try:
        metadata = await _metadata(client, settings)
        token = await client.fetch_access_token(
            redirect_uri=redirect_uri(settings, request),
            code=params["code"],
            code_verifier=flow["cv"],
        )
        if "id_token" not in token:
            raise ValueError("no id_token")
        claims = dict(await client.parse_id_token(token, nonce=flow["nonce"]))
        if settings.oidc_role_claim not in claims and metadata.get("userinfo_endpoint"):
            info = dict(await client.userinfo(token=token))
            if info.get("sub") == claims.get("sub"):  # OIDC Core 5.3.2: must match
                claims = {**info, **claims}
    except _provider_errors() as exc:
        raise _as_sso_error(exc) from None
    return claims


def role_and_groups(settings: Settings, claims: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """The MedLens role (the highest known one when the claim is a list) and groups."""
    raw = claims.get(settings.oidc_role_claim)
    values = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    known = [v for v in values if isinstance(v, str) and v in _ROLE_RANK]
    if known:
        role = max(known, key=_ROLE_RANK.__getitem__)
    elif raw is None and settings.oidc_default_role:
        role = settings.oidc_default_role
    elif raw is None:
        raise SsoError(
            f"Your account at the sign-in provider has no MedLens role (claim "
            f"'{settings.oidc_role_claim}'). Ask an administrator to grant one.",
            reason="no_role",
        )
    else:
        raise SsoError(
            f"Your MedLens role at the sign-in provider is not one of {', '.join(ROLES)}. "
            "Ask an administrator to correct it.",
            reason="unknown_role",
        )
    graw = claims.get(settings.oidc_groups_claim)
    gvalues = [graw] if isinstance(graw, str) else graw if isinstance(graw, list) else []
    groups = tuple(dict.fromkeys(g for g in gvalues if isinstance(g, str) and g))
    return role, groups


def user_name(claims: dict[str, Any]) -> str:
    for key in ("preferred_username", "email", "sub"):
        value = claims.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()[:200]
    raise SsoError("The sign-in provider named no user.", reason="no_subject")


def sign_in(state: ServerState, claims: dict[str, Any]) -> tuple[Actor, dict[str, Any]]:
    """(actor, session fields) for validated claims; creates or updates the user.

    Queries the store: call it from a worker thread.
    """
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise SsoError("The sign-in provider named no user.", reason="no_subject")
    role, groups = role_and_groups(state.settings, claims)
    user = state.store.sso_user(
        _issuer(state.settings), subject, name=user_name(claims), role=role, groups=groups
    )
    return accounts.user_actor(user, "session"), {"uid": user.id, "sso": 1}

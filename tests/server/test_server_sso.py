"""Single sign-on against a real OpenID provider (npm oidc-provider) on 127.0.0.1.

The provider (tests/sso/provider.mjs) has one client - this server, PKCE required - and
accounts: alice (radiologist, ward-a), nora (no role claim), jan (an unknown role). A test
plays the browser: MedLens /auth/oidc/login → provider authorize → the provider's login
form (POSTed) → MedLens callback → session.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest

from medlens.server import oidc

from .conftest import BASE_URL, free_port

pytestmark = pytest.mark.integration

SSO_DIR = Path(__file__).resolve().parents[1] / "sso"
CLIENT_ID = "medlens-test"
CLIENT_SECRET = "test-client-secret-0123456789abcdef"
CALLBACK = BASE_URL + oidc.CALLBACK_PATH
ACCOUNTS = {
    "alice": {"preferred_username": "alice", "medlens_role": "radiologist", "groups": ["ward-a"]},
    "nora": {"preferred_username": "nora", "email": "nora@example.org"},
    "jan": {"preferred_username": "jan", "medlens_role": "janitor"},
}


def _unavailable(reason: str) -> None:
    # In CI the provider is installed by scripts/services.sh: missing it is a failure.
    if os.environ.get("MEDLENS_CI") == "1":
        pytest.fail(f"{reason} (required under MEDLENS_CI=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    """The issuer URL of a freshly started oidc-provider; stopped after the module."""
    node = shutil.which("node")
    if node is None:
        _unavailable("Node.js not found: the SSO tests run a real OpenID provider")
    if not (SSO_DIR / "node_modules" / "oidc-provider").is_dir():
        _unavailable("oidc-provider not installed: run `npm ci` in tests/sso")
    port = free_port()
    env = {
        **os.environ,
        "OIDC_PORT": str(port),
        "OIDC_CLIENT_ID": CLIENT_ID,
        "OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "OIDC_REDIRECT_URI": CALLBACK,
        "OIDC_ACCOUNTS": json.dumps(ACCOUNTS),
        "OIDC_EXTRA_CLAIMS": json.dumps(["medlens_role", "groups"]),
    }
    proc = subprocess.Popen(
        [str(node), "provider.mjs"],
        cwd=SSO_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    issuer = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{issuer}/.well-known/openid-configuration").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read() if proc.stdout else ""
                pytest.fail(f"oidc-provider did not start:\n{out}")
            time.sleep(0.1)
        yield issuer
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def sso_client(client_factory, provider):
    """`sso_client(**settings)`: a MedLens test client with SSO pointed at the provider."""

    def make(**overrides: Any):
        values = {
            "oidc_issuer": provider,
            "oidc_client_id": CLIENT_ID,
            "oidc_client_secret": CLIENT_SECRET,
            "oidc_provider_name": "Test IdP",
            **overrides,
        }
        return client_factory(**values)

    return make


def provider_round(client: Any, login: str) -> str:
    """Start at MedLens, sign in at the provider as `login`; the callback URL it sends back."""
    r = client.get(oidc.LOGIN_PATH, follow_redirects=False)
    assert r.status_code == 303, r.text
    url = r.headers["location"]
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"]
    assert query["state"] and query["nonce"] and query["redirect_uri"] == [CALLBACK]
    with httpx.Client(timeout=10) as browser:
        resp = browser.get(url)
        for _ in range(10):
            if resp.status_code in (302, 303):
                url = urljoin(str(resp.url), resp.headers["location"])
                if url.startswith(CALLBACK):
                    return url
                resp = browser.get(url)
                continue
            form = re.search(r'<form method="post" action="([^"]+)"', resp.text)
            assert resp.status_code == 200 and form, resp.text
            resp = browser.post(urljoin(str(resp.url), form.group(1)), data={"login": login})
    raise AssertionError("the provider never redirected back")


def callback(client: Any, url: str) -> Any:
    parts = urlsplit(url)
    return client.get(f"{parts.path}?{parts.query}", follow_redirects=False)


def test_login_round_trip_through_a_real_provider(sso_client):
    with sso_client() as client:
        assert client.get("/v1/studies").status_code == 401  # SSO on: sign-in required
        login_page = client.get("/login").text
        assert "Sign in with Test IdP" in login_page and oidc.LOGIN_PATH in login_page
        r = callback(client, provider_round(client, "alice"))
        assert r.status_code == 200 and "Signed in as alice" in r.text
        assert r.headers["refresh"] == "0; url=/"
        assert client.get("/v1/studies").status_code == 200
        store = client.app.state.medlens.store
        user = store.get_user_by_name("alice")
        assert user is not None and user.role == "radiologist" and user.groups == ("ward-a",)
        assert user.password_hash is None
        events = [e for e in store.list_audit(limit=20) if e.action == "login"]
        assert events[0].actor == "alice" and events[0].detail == {"via": "oidc"}
        # The page's logout ends the session.
        home = client.get("/")
        assert home.status_code == 200
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', home.text).group(1)
        client.post("/logout", data={"csrf": csrf}, follow_redirects=False)
        assert client.get("/v1/studies").status_code == 401
        # Signing in again finds the same user.
        callback(client, provider_round(client, "alice"))
        assert client.get("/v1/studies").status_code == 200
        assert [u.name for u in store.list_users()] == ["alice"]


def _not_signed_in(client: Any) -> None:
    assert client.get("/v1/studies").status_code == 401
    assert client.app.state.medlens.store.list_users() == []


def test_a_wrong_state_is_refused(sso_client):
    with sso_client() as client:
        url = provider_round(client, "alice")
        forged = re.sub(r"state=[^&]+", "state=forged", url)
        r = callback(client, forged)
        assert r.status_code == 400 and "does not match" in r.text
        _not_signed_in(client)


def test_an_answer_naming_another_issuer_is_refused(sso_client):
    with sso_client() as client:
        url = provider_round(client, "alice")
        assert "iss=" in url  # oidc-provider names itself (RFC 9207)
        r = callback(client, re.sub(r"iss=[^&]+", "iss=https%3A%2F%2Fevil.example", url))
        assert r.status_code == 403 and "another provider" in r.text
        _not_signed_in(client)


def test_a_callback_without_its_flow_cookie_is_refused(sso_client):
    # Login CSRF: someone else's code, delivered to a browser that never started a sign-in.
    with sso_client() as client:
        url = provider_round(client, "alice")
    with sso_client() as victim:
        r = callback(victim, url)
        assert r.status_code == 400 and "start again" in r.text
        _not_signed_in(victim)


@pytest.mark.parametrize("field", ["nonce", "cv"])
def test_a_wrong_nonce_or_code_verifier_is_refused(sso_client, field):
    with sso_client() as client:
        url = provider_round(client, "alice")
        sessions = client.app.state.medlens.sessions
        flow = oidc.read_flow(client.app.state.medlens, client.cookies.get(oidc.FLOW_COOKIE))
        assert flow is not None
        forged, _sid = sessions.issue(None, {**flow, field: "x" * 43})
        client.cookies.clear()
        client.cookies.set(oidc.FLOW_COOKIE, forged, domain="127.0.0.1", path="/auth/oidc")
        r = callback(client, url)
        assert r.status_code == 403 and "could not be verified" in r.text
        _not_signed_in(client)


def test_a_missing_role_claim_is_refused_unless_a_default_is_set(sso_client):
    with sso_client() as client:
        r = callback(client, provider_round(client, "nora"))
        assert r.status_code == 403 and "no MedLens role" in r.text
        _not_signed_in(client)
        events = client.app.state.medlens.store.list_audit(limit=5)
        assert events[0].outcome == "denied" and events[0].detail["reason"] == "no_role"
    with sso_client(oidc_default_role="clinician") as client:
        assert callback(client, provider_round(client, "nora")).status_code == 200
        user = client.app.state.medlens.store.get_user_by_name("nora")
        assert user is not None and user.role == "clinician" and user.groups == ()


def test_an_unknown_role_is_refused(sso_client):
    with sso_client(oidc_default_role="clinician") as client:  # a default does not rescue it
        r = callback(client, provider_round(client, "jan"))
        assert r.status_code == 403 and "not one of clinician, radiologist, admin" in r.text
        _not_signed_in(client)


def test_a_provider_that_is_down_gives_a_clear_page(client_factory):
    issuer = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with client_factory(oidc_issuer=issuer, oidc_client_id=CLIENT_ID) as client:
        r = client.get(oidc.LOGIN_PATH, follow_redirects=False)
        assert r.status_code == 502 and "cannot be reached" in r.text
        assert "Traceback" not in r.text and "httpx" not in r.text
        assert client.get("/v1/studies").status_code == 401


def test_sso_routes_are_inert_when_not_configured(client_factory):
    with client_factory() as client:
        r = client.get(oidc.LOGIN_PATH, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login"
        assert "sso-login" not in client.get("/login").text


def _settings(tmp_path: Path, **overrides: Any) -> Any:
    from medlens.config import Settings

    return Settings(
        data_dir=tmp_path,
        oidc_issuer="https://idp.example.org",
        oidc_client_id=CLIENT_ID,
        **overrides,
    )


def test_role_and_groups_from_claims(tmp_path):
    settings = _settings(tmp_path, oidc_role_claim="roles", oidc_groups_claim="teams")
    claims = {"roles": ["viewer", "clinician", "admin"], "teams": ["a", "a", "", 3, "b"]}
    assert oidc.role_and_groups(settings, claims) == ("admin", ("a", "b"))
    assert oidc.role_and_groups(settings, {"roles": "radiologist", "teams": "a"}) == (
        "radiologist",
        ("a",),
    )
    with pytest.raises(oidc.SsoError, match="not one of"):
        oidc.role_and_groups(settings, {"roles": ["viewer"]})
    with pytest.raises(oidc.SsoError, match="no MedLens role"):
        oidc.role_and_groups(settings, {"medlens_role": "admin"})  # not the configured claim


def test_an_issuer_needs_a_client_id(tmp_path, monkeypatch):
    from medlens.config import load_settings
    from medlens.errors import ConfigError

    monkeypatch.setenv("MEDLENS_OIDC_ISSUER", "https://idp.example.org")
    with pytest.raises(ConfigError, match="MEDLENS_OIDC_CLIENT_ID"):
        load_settings(data_dir=tmp_path)
    monkeypatch.setenv("MEDLENS_OIDC_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("MEDLENS_OIDC_CLIENT_SECRET", "a-secret-value")
    settings = load_settings(data_dir=tmp_path)
    assert settings.oidc_client_secret is not None and "a-secret-value" not in repr(settings)

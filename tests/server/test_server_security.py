"""Auth (401/403), page sessions + CSRF, Host check, bind refusal, CSP, escaping."""

from __future__ import annotations

import re

import pytest

from medlens.config import Settings
from medlens.errors import ConfigError
from medlens.server.security import check_bind

TOKEN = "s3cret-token-for-tests-0123456789abcdef"  # >= 32 characters (config refuses less)
AUTH = {"Authorization": f"Bearer {TOKEN}"}

PROTECTED = [
    ("GET", "/v1/studies"), ("POST", "/v1/studies"), ("GET", "/v1/studies/abc"),
    ("DELETE", "/v1/studies/abc"), ("GET", "/v1/studies/abc/interpretation"),
    ("POST", "/v1/studies/abc/messages"), ("GET", "/v1/studies/abc/messages"),
    ("GET", "/v1/studies/abc/images/0.png"), ("GET", "/v1/jobs/abc"),
    ("GET", "/v1/jobs/abc/events"), ("POST", "/v1/chat/completions"), ("GET", "/metrics"),
    ("GET", "/v1/models"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_api_endpoint_needs_a_token(client_factory, method, path):
    with client_factory(api_tokens=[TOKEN]) as client:
        missing = client.request(method, path)
        assert missing.status_code == 401, missing.text
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = client.request(method, path, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 403
        assert client.get("/healthz").status_code == 200  # probes stay open
        if path.startswith("/v1/chat"):
            assert wrong.json()["error"]["type"] == "permission_error"  # OpenAI's shape
        else:
            assert wrong.json()["error"]["code"] == "forbidden"


def test_right_token_works_and_is_the_audited_actor(client_factory, upload, cxr_png):
    with client_factory(api_tokens=[TOKEN, "other-token-for-tests-0123456789abcdef"]) as client:
        r = upload(client, ("a.png", cxr_png), headers=AUTH)
        assert r.status_code == 201
        sid = r.json()["id"]
        assert client.get(f"/v1/studies/{sid}", headers=AUTH).status_code == 200
        actors = {e.actor for e in client.app.state.medlens.store.list_audit()}
        assert len(actors) == 1 and actors.pop().startswith("token:")
        assert TOKEN not in str(client.app.state.medlens.store.list_audit())


def test_page_requires_login_with_tokens(client_factory):
    with client_factory(api_tokens=[TOKEN]) as client:
        r = client.get("/", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login"
        page = client.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        bad = client.post("/login", data={"token": "nope", "csrf": csrf})
        assert bad.status_code == 403 and "not valid" in bad.text
        no_csrf = client.post("/login", data={"token": TOKEN, "csrf": "x"})
        assert no_csrf.status_code == 403
        ok = client.post("/login", data={"token": TOKEN, "csrf": csrf}, follow_redirects=False)
        assert ok.status_code == 303
        home = client.get("/")
        assert home.status_code == 200 and "Interpret a chest X-ray" in home.text
        # The session works for API reads; writes need the CSRF header.
        assert client.get("/v1/studies").status_code == 200
        page_csrf = re.search(r'name="csrf-token" content="([^"]+)"', home.text).group(1)
        assert client.delete("/v1/studies/nope").status_code == 403
        r = client.delete("/v1/studies/nope", headers={"X-CSRF-Token": page_csrf})
        assert r.status_code == 404


def test_page_works_without_tokens_on_loopback(client_factory, upload, cxr_png):
    with client_factory() as client:
        assert client.get("/").status_code == 200
        sid = upload(client, ("a.png", cxr_png),
                     headers={"X-CSRF-Token": _csrf(client)}).json()["id"]
        assert client.get(f"/studies/{sid}").status_code == 200


def _csrf(client) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', client.get("/").text).group(1)


def test_cross_origin_post_is_refused(client_factory, upload, cxr_png):
    with client_factory() as client:
        r = upload(client, ("a.png", cxr_png), headers={"Origin": "http://evil.example"})
        assert r.status_code == 403
        same = upload(client, ("a.png", cxr_png), headers={"Origin": "http://127.0.0.1"})
        assert same.status_code == 201


def test_cookie_without_csrf_header_is_refused(client_factory, upload, cxr_png):
    with client_factory() as client:
        client.get("/")  # gets a session cookie
        assert upload(client, ("a.png", cxr_png)).status_code == 403


def test_foreign_host_is_refused_without_tokens(client_factory):
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends Host: evil.example."""
    with client_factory() as client:
        r = client.get("/v1/studies", headers={"Host": "evil.example:8000"})
        assert r.status_code == 421
        assert client.get("/v1/studies", headers={"Host": "localhost:8000"}).status_code == 200


def test_non_loopback_bind_needs_a_token(tmp_path):
    settings = Settings(data_dir=tmp_path)
    with pytest.raises(ConfigError, match="Refusing to listen"):
        check_bind("0.0.0.0", settings)
    check_bind("127.0.0.1", settings)
    check_bind("::1", settings)
    check_bind("0.0.0.0", Settings(data_dir=tmp_path, api_tokens=[TOKEN]))


def test_csp_forbids_inline_script_and_pages_have_none(client_factory, upload, cxr_png):
    with client_factory() as client:
        sid = upload(client, ("a.png", cxr_png)).json()["id"]
        for path in ("/", f"/studies/{sid}", "/docs", "/login"):
            r = client.get(path)
            csp = r.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp
            assert r.headers["x-content-type-options"] == "nosniff"
            scripts = re.findall(r"<script([^>]*)>", r.text)
            assert scripts and all('src="/static/' in s for s in scripts), scripts
            assert not re.search(r"\son[a-z]+\s*=", r.text), "inline event handler found"
            assert "style=" not in r.text


def test_untrusted_text_is_escaped(client_factory, upload, cxr_png):
    payload = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    with client_factory() as client:
        sid = upload(client, (payload + ".png", cxr_png), indication=payload).json()["id"]
        html = client.get(f"/studies/{sid}").text + client.get("/").text
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html


def test_no_cors_grant_for_other_origins(client_factory):
    with client_factory() as client:
        pre = client.options("/v1/studies", headers={
            "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in pre.headers
        r = client.get("/v1/studies", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in r.headers
        assert "access-control-allow-credentials" not in r.headers


def test_session_cookie_is_httponly_and_strict(client_factory):
    with client_factory() as client:
        cookie = client.get("/").headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie

"""Users, roles and sharing on every route: another user's study is a 404, always.

Cast: alice (clinician, ward-a) uploads; carol (clinician, ward-a) and rita (radiologist,
ward-a) share her group; adam is an admin; dave (clinician, ward-b) and olga (radiologist,
ward-b) are outsiders.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.routing import APIRoute

from medlens.config import Settings
from medlens.errors import ConfigError
from medlens.server.security import check_bind
from medlens.store import users as U

PASSWORD = "correct horse battery staple"
CAST = {
    "alice": ("clinician", ["ward-a"]),
    "carol": ("clinician", ["ward-a"]),
    "rita": ("radiologist", ["ward-a"]),
    "adam": ("admin", []),
    "dave": ("clinician", ["ward-b"]),
    "olga": ("radiologist", ["ward-b"]),
}
INSIDERS = ("alice", "carol", "rita", "adam")
OUTSIDERS = ("dave", "olga")
_PW_HASH: dict[str, str] = {}


def _add_users(store: Any) -> dict[str, str]:
    """The cast in the store; returns a fresh API token per user."""
    if "h" not in _PW_HASH:
        _PW_HASH["h"] = U.hash_password(PASSWORD)  # one Argon2 hash, reused: tests stay fast
    tokens = {}
    for name, (role, groups) in CAST.items():
        user = store.create_user(name, role, groups, _PW_HASH["h"])
        token, sha, prefix = U.new_token()
        store.add_token(user.id, sha, prefix)
        tokens[name] = token
    return tokens


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def world(client_factory, upload, cxr_png):
    """(client, tokens, study id, job id): alice's study on a server with the cast."""
    with client_factory() as client:
        store = client.app.state.medlens.store
        tokens = _add_users(store)
        r = upload(client, ("a.png", cxr_png), headers=_bearer(tokens["alice"]))
        assert r.status_code == 201, r.text
        yield client, tokens, r.json()["id"], r.json()["job"]["id"]


def _example(schema: dict[str, Any], spec: dict[str, Any]) -> Any:
    """A minimal valid value for a JSON schema (so validation passes and 404 is reached)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return _example(spec["components"]["schemas"][name], spec)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return _example(options[0], spec)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "object")
    if kind == "object":
        props = schema.get("properties", {})
        return {k: _example(props[k], spec) for k in schema.get("required", [])}
    if kind == "array":
        return [_example(schema.get("items", {}), spec) for _ in range(schema.get("minItems", 0))]
    values = {"string": "x" * max(1, schema.get("minLength", 1)), "integer": 0,
              "number": 0, "boolean": False}
    return values.get(kind, "x")


def _study_routes(client) -> list[tuple[str, str, Any, bool]]:
    """(method, path template, JSON body or None, streams) for every route naming a study
    or job: the OpenAPI schema's and the page's (which are not in the schema)."""
    spec = client.app.openapi()
    found = []
    for path, ops in spec["paths"].items():
        if "{study_id}" not in path and "{job_id}" not in path:
            continue
        for method, op in ops.items():
            body = None
            content = (op.get("requestBody") or {}).get("content", {})
            if "application/json" in content:
                body = _example(content["application/json"]["schema"], spec)
            streams = "text/event-stream" in str(op.get("responses", {}))
            found.append((method.upper(), path, body, streams))
    for path, route in _api_routes(client.app.routes):
        if path not in spec["paths"] and ("{study_id}" in path or "{job_id}" in path):
            found.extend((m, path, None, False) for m in sorted(route.methods) if m != "HEAD")
    return found


def _api_routes(routes: list[Any], prefix: str = "") -> list[tuple[str, APIRoute]]:
    """Every APIRoute with its full path, into included routers (FastAPI nests them)."""
    out = []
    for route in routes:
        if isinstance(route, APIRoute):
            out.append((prefix + route.path, route))
        inner = getattr(route, "original_router", None)
        if inner is not None:
            extra = getattr(getattr(route, "include_context", None), "prefix", "") or ""
            out.extend(_api_routes(inner.routes, prefix + extra))
    return out


def _fill(path: str, sid: str, jid: str) -> str:
    path = path.replace("{study_id}", sid).replace("{job_id}", jid)
    return re.sub(r"\{[a-z_]+\}", "0", path)  # image position and the like


def _login(client, name: str) -> None:
    page = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = client.post("/login", data={"name": name, "password": PASSWORD, "csrf": csrf},
                    follow_redirects=False)
    assert r.status_code == 303, r.text


def _csrf(client) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', client.get("/").text).group(1)


def test_every_study_route_is_404_for_outsiders_and_open_to_insiders(world):
    client, tokens, sid, jid = world
    routes = _study_routes(client)
    paths = {p for _m, p, _b, _s in routes}
    assert {"/v1/studies/{study_id}", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/events",
            "/v1/studies/{study_id}/images/{position}.png", "/studies/{study_id}"} <= paths
    api_paths = client.app.openapi()["paths"]
    for who in OUTSIDERS:
        for method, path, body, _streams in routes:
            if path not in api_paths:
                continue  # a page: needs a session (below); a bearer token gets the login
            r = client.request(method, _fill(path, sid, jid), json=body,
                               headers=_bearer(tokens[who]))
            assert r.status_code == 404, (who, method, path, r.status_code, r.text[:200])
            assert sid not in r.text or "No study" in r.text
        _login(client, who)  # the same through a page session (cookie + CSRF header)
        headers = {"X-CSRF-Token": _csrf(client)}
        for method, path, body, _streams in routes:
            r = client.request(method, _fill(path, sid, jid), json=body, headers=headers)
            assert r.status_code == 404, (who, "session", method, path, r.status_code)
        client.cookies.clear()
    assert client.app.state.medlens.store.get_study(sid) is not None  # DELETE did nothing
    for who in INSIDERS:
        for method, path, body, streams in routes:
            if streams or method == "DELETE":
                continue  # an SSE stream would wait for the job; deleting ends the test
            headers = _bearer(tokens[who]) if path in api_paths else {}
            if path not in api_paths:
                _login(client, who)
            r = client.request(method, _fill(path, sid, jid), json=body, headers=headers)
            client.cookies.clear()
            assert r.status_code != 404 and r.status_code < 500, (who, method, path, r.text)
            assert "Sign in" not in r.text[:2000], (who, path)  # really in, not at the login
    r = client.delete(f"/v1/studies/{sid}", headers=_bearer(tokens["carol"]))
    assert r.status_code == 204  # a group-mate may delete a shared study


def test_listings_show_only_visible_studies(world, upload, cxr_png_2):
    client, tokens, sid, _jid = world
    r = upload(client, ("b.png", cxr_png_2), headers=_bearer(tokens["dave"]))
    dave_sid = r.json()["id"]
    seen = {
        who: {s["id"] for s in client.get("/v1/studies", headers=_bearer(t)).json()["studies"]}
        for who, t in tokens.items()
    }
    assert seen["alice"] == seen["carol"] == seen["rita"] == {sid}
    assert seen["dave"] == seen["olga"] == {dave_sid}
    assert seen["adam"] == {sid, dave_sid}
    _login(client, "dave")
    home = client.get("/").text
    assert dave_sid in home and sid not in home
    assert client.get(f"/studies/{sid}").status_code == 404


def test_uploads_record_owner_and_group(client_factory, upload, cxr_png, cxr_png_2):
    with client_factory() as client:
        store = client.app.state.medlens.store
        store.create_user("multi", "clinician", ["ward-a", "ward-b"], None)
        token, sha, prefix = U.new_token()
        store.add_token(store.get_user_by_name("multi").id, sha, prefix)
        r = upload(client, ("a.png", cxr_png), headers=_bearer(token))
        study = store.get_study(r.json()["id"])
        assert study.owner_id == store.get_user_by_name("multi").id
        assert study.group == "ward-a"  # the first group by default
        r = upload(client, ("b.png", cxr_png_2), headers=_bearer(token), group="ward-b")
        assert store.get_study(r.json()["id"]).group == "ward-b"
        refused = upload(client, ("b.png", cxr_png_2), headers=_bearer(token), group="ward-z")
        assert refused.status_code == 400 and "ward-z" in refused.text


def test_same_images_from_two_users_are_two_studies(world, upload, cxr_png):
    client, tokens, sid, _jid = world
    r = upload(client, ("a.png", cxr_png), headers=_bearer(tokens["dave"]))
    assert r.status_code == 201 and r.json()["id"] != sid  # no hint that alice has it
    again = upload(client, ("a.png", cxr_png), headers=_bearer(tokens["alice"]))
    assert again.status_code == 200 and again.json()["id"] == sid


def test_revoking_a_token_or_removing_a_user_takes_effect_at_once(world):
    client, tokens, sid, _jid = world
    store = client.app.state.medlens.store
    alice = store.get_user_by_name("alice")
    assert client.get(f"/v1/studies/{sid}", headers=_bearer(tokens["alice"])).status_code == 200
    assert store.revoke_tokens(prefix=tokens["alice"][:12]) == 1
    r = client.get(f"/v1/studies/{sid}", headers=_bearer(tokens["alice"]))
    assert r.status_code == 403
    # A page session started with a token ends with the token.
    token, sha, prefix = U.new_token()
    store.add_token(alice.id, sha, prefix)
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
    assert client.post("/login", data={"token": token, "csrf": csrf},
                       follow_redirects=False).status_code == 303
    assert client.get(f"/v1/studies/{sid}").status_code == 200
    store.revoke_tokens(user_id=alice.id)
    assert client.get(f"/v1/studies/{sid}").status_code == 401
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    client.cookies.clear()
    # A password session ends when the user goes, or when the password changes.
    _login(client, "carol")
    assert client.get(f"/v1/studies/{sid}").status_code == 200
    store.set_password(store.get_user_by_name("carol").id, U.hash_password("another password"))
    assert client.get(f"/v1/studies/{sid}").status_code == 401
    client.cookies.clear()
    _login(client, "rita")
    assert client.get(f"/v1/studies/{sid}").status_code == 200
    store.delete_user(store.get_user_by_name("rita").id)
    assert client.get(f"/v1/studies/{sid}").status_code == 401


def test_password_login_refuses_wrong_passwords_and_unknown_names(world):
    client, _tokens, _sid, _jid = world
    assert client.get("/v1/studies").status_code == 401  # users exist: auth is on
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    for name, password in (("alice", "wrong password"), ("nobody", PASSWORD)):
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
        r = client.post("/login", data={"name": name, "password": password, "csrf": csrf})
        assert r.status_code == 403 and "Wrong name or password" in r.text
    _login(client, "alice")
    assert "Interpret a chest X-ray" in client.get("/").text
    assert "Log out" in client.get("/").text


def test_bootstrap_tokens_act_as_admin_beside_users(client_factory, upload, cxr_png):
    boot = "b" * 40
    with client_factory(api_tokens=[boot]) as client:
        tokens = _add_users(client.app.state.medlens.store)
        sid = upload(client, ("a.png", cxr_png), headers=_bearer(tokens["dave"])).json()["id"]
        assert client.get(f"/v1/studies/{sid}", headers=_bearer(boot)).status_code == 200
        assert client.get(f"/v1/studies/{sid}", headers=_bearer(tokens["alice"])).status_code == 404
        actors = {e.actor for e in client.app.state.medlens.store.list_audit()}
        assert "dave" in actors and any(a.startswith("token:") for a in actors)


def test_short_configured_tokens_are_refused_and_binding_needs_auth(tmp_path):
    with pytest.raises(ValueError, match="shorter than 32"):
        Settings(data_dir=tmp_path, api_tokens=["x" * 31])
    settings = Settings(data_dir=tmp_path)
    with pytest.raises(ConfigError, match="Refusing to listen"):
        check_bind("0.0.0.0", settings)
    check_bind("0.0.0.0", settings, has_users=True)
    from medlens.cli.serve import _has_users
    from medlens.store import open_store

    assert not _has_users(settings)
    store = open_store(settings)
    store.create_user("adam", "admin", [], None)
    store.close()
    assert _has_users(settings)  # so `medlens serve --host 0.0.0.0` starts with users alone


def test_no_local_mode_off_loopback(client_factory):
    """Bound beyond loopback with no auth left (say the last user was removed): nobody is
    the local admin; every study route asks for credentials."""
    with client_factory(host="0.0.0.0") as client:
        assert client.get("/v1/studies").status_code == 401
        assert client.get("/v1/studies", headers={"Host": "evil.example"}).status_code == 401
        assert client.get("/", follow_redirects=False).headers["location"] == "/login"
        assert client.get("/v1/studies").status_code == 401  # with the page's cookie too


def test_single_user_loopback_mode_is_unchanged(client_factory, upload, cxr_png):
    with client_factory() as client:
        sid = upload(client, ("a.png", cxr_png)).json()["id"]
        assert client.get(f"/v1/studies/{sid}").status_code == 200
        assert client.get(f"/studies/{sid}").status_code == 200
        study = client.app.state.medlens.store.get_study(sid)
        assert study.owner_id is None and study.group is None

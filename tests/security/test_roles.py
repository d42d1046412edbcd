"""Every route of the app, refused without sign-in and with the wrong role (issue 12).

The routes are enumerated from the application itself: a route added later that is neither
on the public list below nor refused fails these tests. Requests are real HTTP requests
(FastAPI's TestClient) to the real app on a real database; signed-in users are real rows of
``web_sessions`` presented by their cookie, as a browser would.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest_service import make_settings, write_api_keys

#: Open to anyone: the guideline browse pages, sign-in itself, API metadata and docs.
PUBLIC = {
    ("GET", "/"), ("GET", "/ui/groups"), ("GET", "/ui/groups/{gid}"), ("GET", "/search"),
    ("GET", "/favicon.ico"), ("GET", "/login"), ("GET", "/auth/callback"), ("POST", "/logout"),
    ("GET", "/smart/launch"), ("GET", "/smart/callback"),
    ("GET", "/api"), ("GET", "/healthz"), ("GET", "/version"), ("GET", "/openapi.json"),
    ("GET", "/api/docs"), ("GET", "/api/docs/oauth2-redirect"), ("GET", "/api/redoc"),
    ("GET", "/cds-services"),
}
#: CDS Hooks services: a CDS client's signed JWT (tests/test_cds_hooks.py attacks them).
CDS = {("POST", "/cds-services/{service_id}"), ("POST", "/cds-services/{service_id}/feedback")}
#: Web pages that change patient data: the clinician role.
WEB_CLINICIAN = {("POST", "/cases"), ("POST", "/cases/{cid}/decision")}
#: The audit trail: an API key with the auditor role.
API_AUDITOR = {("GET", "/audit"), ("GET", "/audit/{audit_id}")}


def routes(app: Any) -> Iterator[tuple[str, str, bool]]:
    """(method, path, in the OpenAPI schema) of every route, through included routers."""
    def walk(rs: Any, prefix: str) -> Iterator[tuple[str, str, bool]]:
        for r in rs:
            inner = getattr(r, "original_router", None)
            if inner is not None:  # (FastAPI >= 0.16x keeps included routers whole)
                ctx = getattr(r, "include_context", None)
                yield from walk(inner.routes, prefix + str(getattr(ctx, "prefix", "") or ""))
                continue
            path, methods = getattr(r, "path", None), getattr(r, "methods", None)
            if path is None or not methods:
                continue  # (mounts: static files)
            for m in sorted(methods - {"HEAD"}):
                yield m, prefix + path, bool(getattr(r, "include_in_schema", False))
    yield from walk(app.routes, "")


def concrete(path: str) -> str:
    return re.sub(r"\{n\}", "1", re.sub(r"\{(?!n\})[^}]+\}", "x", path))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """An app with sign-in (a provider that is never contacted here) and API keys."""
    from sarcoma_cds.interfaces.api.app import create_app

    tmp = tmp_path_factory.mktemp("roles")
    keys = write_api_keys(tmp, {"legacy": "k-legacy", "viewer roles=viewer": "k-viewer",
                                "audit roles=auditor": "k-audit"})
    s = make_settings(tmp, api_keys_file=keys, oidc_issuer="http://127.0.0.1:9",
                      oidc_client_id="sarcoma-cds", oidc_allowed="*",
                      oidc_roles="clinician=c")
    with TestClient(create_app(s)) as c:
        ident = c.app.state.identity  # type: ignore[attr-defined]

        def session(*roles: str) -> str:
            return str(ident.sessions.create(kind="oidc", subject="u-" + "-".join(roles),
                                              display_name="Test User", roles=roles,
                                              lifetime=timedelta(hours=1)))

        yield {"client": c, "viewer": session("viewer"), "auditor": session("auditor"),
               "clinician": session("clinician", "viewer")}


def call(c: TestClient, method: str, path: str, cookie: str | None = None,
         key: str | None = None) -> Any:
    c.cookies.clear()
    if cookie:
        c.cookies.set("sarcoma-session", cookie)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    kw: dict[str, Any] = {"json": {}} if method == "POST" and path.startswith(("/rec", "/fhir")) \
        else {}
    return c.request(method, concrete(path), headers=headers, follow_redirects=False, **kw)


def all_routes(world: dict[str, Any]) -> list[tuple[str, str, bool]]:
    return sorted(set(routes(world["client"].app)))


def test_the_enumeration_finds_the_routes(world: dict[str, Any]) -> None:
    found = {(m, p) for m, p, _ in all_routes(world)}
    assert {("GET", "/cases/{cid}"), ("POST", "/recommendations"), ("GET", "/board/{n}"),
            ("GET", "/audit")} <= found
    assert len(found) > 30


def test_every_guarded_route_refuses_the_anonymous(world: dict[str, Any]) -> None:
    c = world["client"]
    checked = 0
    for method, path, api in all_routes(world):
        if (method, path) in PUBLIC | CDS:
            continue
        r = call(c, method, path)
        if api:
            assert r.status_code == 401, (method, path, r.status_code)
            assert r.headers["content-type"].startswith("application/problem+json")
        else:
            assert r.status_code == 303, (method, path, r.status_code)
            assert r.headers["location"].startswith("/login?next=/"), (method, path)
        checked += 1
    assert checked >= 20


def test_web_routes_refuse_a_user_without_the_role(world: dict[str, Any]) -> None:
    c = world["client"]
    for method, path, api in all_routes(world):
        if api or (method, path) in PUBLIC | CDS:
            continue
        if (method, path) in WEB_CLINICIAN:
            r = call(c, method, path, cookie=world["viewer"])
            assert r.status_code == 403 and "needs the clinician role" in r.text, path
            assert "Test User" in r.text
        r = call(c, method, path, cookie=world["auditor"])  # no viewer role
        assert r.status_code == 403, (method, path, r.status_code)
        assert "role" in r.text and "Traceback" not in r.text


def test_web_routes_admit_the_right_role(world: dict[str, Any]) -> None:
    c = world["client"]
    assert call(c, "GET", "/cases", cookie=world["viewer"]).status_code == 200
    assert call(c, "GET", "/cases/nope", cookie=world["viewer"]).status_code == 404
    r = call(c, "POST", "/cases/nope/decision", cookie=world["clinician"])
    assert r.status_code == 404  # (past the guard: the case does not exist)


def test_api_routes_refuse_a_key_without_the_role(world: dict[str, Any]) -> None:
    c = world["client"]
    for method, path, api in all_routes(world):
        if not api or (method, path) in PUBLIC | CDS:
            continue
        wrong = "k-viewer" if (method, path) in API_AUDITOR else "k-audit"
        r = call(c, method, path, key=wrong)
        assert r.status_code == 403, (method, path, r.status_code)
        body = r.json()
        assert body["status"] == 403 and "role" in body["detail"]


def test_keys_keep_what_they_could_do(world: dict[str, Any]) -> None:
    """A key listed without roles= still reaches the REST API and the audit trail."""
    c = world["client"]
    assert call(c, "GET", "/audit", key="k-legacy").status_code == 200
    assert call(c, "GET", "/groups", key="k-legacy").status_code == 200
    assert call(c, "GET", "/audit", key="k-audit").status_code == 200
    assert call(c, "GET", "/groups", key="k-viewer").status_code == 200


def test_a_session_does_not_open_the_api(world: dict[str, Any]) -> None:
    c = world["client"]
    assert call(c, "GET", "/audit", cookie=world["clinician"]).status_code == 401


def test_home_page_hides_saved_cases_from_the_anonymous(tmp_path: Path) -> None:
    from sarcoma_cds.interfaces.api.app import create_app

    s = make_settings(tmp_path, oidc_issuer="http://127.0.0.1:9", oidc_client_id="x",
                      oidc_allowed="*")
    with TestClient(create_app(s)) as c:
        ident = c.app.state.identity  # type: ignore[attr-defined]
        services = c.app.state.services  # type: ignore[attr-defined]
        services.save_case({"histology": "gist", "primary_site": "stomach",
                            "pdgfra_mutation": "d842v", "metastasis": "M1"},
                           caller="t", label="Mrs Secret-Label")
        assert "Mrs Secret-Label" not in c.get("/").text
        c.cookies.set("sarcoma-session", ident.sessions.create(
            kind="oidc", subject="v", display_name="V", roles=["viewer"],
            lifetime=timedelta(hours=1)))
        assert "Mrs Secret-Label" in c.get("/").text


def test_key_file_roles_are_checked(tmp_path: Path) -> None:
    from sarcoma_cds.interfaces.api.security import load_api_key_roles, load_api_keys

    keys = write_api_keys(tmp_path, {"ward roles=clinician,auditor": "a", "old": "b"})
    assert sorted(load_api_keys(keys).values()) == ["old", "ward"]
    assert load_api_key_roles(keys) == {"ward": frozenset({"clinician", "viewer", "auditor"})}
    bad = write_api_keys(tmp_path, {"x roles=surgeon": "c"})
    with pytest.raises(ValueError, match="surgeon"):
        load_api_key_roles(bad)


def test_keys_without_sign_in_close_every_guarded_page(tmp_path: Path) -> None:
    from sarcoma_cds.interfaces.api.app import create_app

    s = make_settings(tmp_path, api_keys_file=write_api_keys(tmp_path, {"w": "k-w"}))
    with TestClient(create_app(s)) as c:
        for method, path, api in sorted(set(routes(c.app))):
            if api or (method, path) in PUBLIC | CDS:
                continue
            r = call(c, method, path, key="k-w")  # (a key does not open a page)
            assert r.status_code == 403 and "Sign-in is not configured" in r.text, path


def test_names_from_the_provider_are_escaped(world: dict[str, Any]) -> None:
    """A display name is the identity provider's claim: shown, never run as markup."""
    c = world["client"]
    ident = c.app.state.identity  # type: ignore[attr-defined]
    token = ident.sessions.create(kind="oidc", subject="x", display_name="<script>x()</script>",
                                  roles=["auditor"], lifetime=timedelta(hours=1))
    for path in ("/search?q=imatinib", "/cases"):  # the header, and the 403 page naming the user
        r = call(c, "GET", path, cookie=token)
        assert "<script>x()" not in r.text and "&lt;script&gt;x()" in r.text, path

"""Schemathesis with an API key configured (red-team review, issue 12 quality bar).

``tests/test_schemathesis.py`` runs without keys, so every keyed route (``/audit``, the REST
API behind a key) answered 401 before its input was even read. Here the app has keys (an
auditor key and a viewer-only key) and every case carries one: positive and negative cases
reach the routes' own validation and must never get a 5xx; a refusal is a problem document.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig

sys.path.insert(0, str(Path(__file__).parent.parent))
from conftest_service import BASE_URL, make_settings, pg_url_or_skip
from sarcoma_cds.interfaces.api import create_app

_tmp = Path(tempfile.mkdtemp(prefix="sarcoma-schemathesis-keyed-"))
_keys = _tmp / "api-keys.txt"
_keys.write_text(
    "# sha256 name roles\n"
    "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae auditor "
    "roles=viewer,clinician,auditor\n"  # key "foo"
    "fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9 viewer "
    "roles=viewer\n")  # key "bar"
APP = create_app(make_settings(_tmp, base_url=BASE_URL, api_keys_file=_keys))
KEYS = {"auditor": "foo", "viewer": "bar"}


def _config(mode: GenerationMode) -> SchemathesisConfig:
    config = SchemathesisConfig()
    config.projects.default.generation.update(modes=[mode], allow_x00=True)
    return config


positive = schemathesis.openapi.from_asgi("/openapi.json", APP,
                                          config=_config(GenerationMode.POSITIVE))
negative = schemathesis.openapi.from_asgi("/openapi.json", APP,
                                          config=_config(GenerationMode.NEGATIVE))


def _check(case, response) -> None:  # type: ignore[no-untyped-def]
    where = (case.method, case.path, response.status_code, response.text[:500])
    assert response.status_code < 500, where
    if response.status_code >= 400 and case.path not in ("/", "/api/docs", "/api/redoc"):
        ctype = response.headers.get("content-type") or [""]
        ctype = ctype[0] if isinstance(ctype, list) else ctype
        assert ctype.startswith(("application/problem+json", "text/html")), where


def _call(case, key: str):  # type: ignore[no-untyped-def]
    return case.call(headers={"Authorization": f"Bearer {key}"})


@positive.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_keyed_positive_cases_never_fail(case) -> None:  # type: ignore[no-untyped-def]
    for key in KEYS.values():
        _check(case, _call(case, key))


@negative.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_keyed_negative_cases_refused_cleanly(case) -> None:  # type: ignore[no-untyped-def]
    for key in KEYS.values():
        _check(case, _call(case, key))


@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_an_audit_cursor_beyond_the_databases_integers_is_a_422(db: str) -> None:
    """Found by the keyed run above: ``GET /audit?after=<20 digits>`` with an auditor key was
    a 500 (SQLite: OverflowError; PostgreSQL: integer out of range past 2**31 - 1)."""
    from fastapi.testclient import TestClient

    app = APP
    if db == "postgresql":
        tmp = Path(tempfile.mkdtemp(prefix="sarcoma-keyed-pg-"))
        app = create_app(make_settings(tmp, base_url=BASE_URL, api_keys_file=_keys,
                                       database_url=pg_url_or_skip()))
    with TestClient(app, base_url=BASE_URL) as c:
        auth = {"Authorization": f"Bearer {KEYS['auditor']}"}
        for after in ("99999999999999999999", str(2**31)):
            r = c.get("/audit", params={"after": after}, headers=auth)
            assert r.status_code == 422, r.text[:300]
            assert r.headers["content-type"].startswith("application/problem+json")
        r = c.get("/audit", params={"after": str(2**31 - 1)}, headers=auth)
        assert r.status_code == 200 and r.json()["items"] == []

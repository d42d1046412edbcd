"""Per-client rate limits (issue 12, denial of service): a client flooding the service is
answered 429 while the others are served, and the count is shared by every app instance on
one database. The limiter's clock is pinned inside one window, so nothing depends on time."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).parent.parent))
from conftest_service import (
    BASE_URL,
    Signer,
    make_settings,
    pg_url_or_skip,
    write_api_keys,
)
from sarcoma_cds.interfaces.api import create_app
from sarcoma_cds.store.models import RateLimit

NOW = 1_800_000_010.0  # 10 s into a window


def _app(tmp_path: Path, limit: int, *, db: str | None = None, **kw: Any) -> Any:
    settings = make_settings(tmp_path, base_url=BASE_URL, rate_limit=limit, database_url=db, **kw)
    app = create_app(settings)
    app.state.rate_limiter.clock = lambda: NOW
    return app


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _rows(app: Any) -> dict[str, int]:
    with app.state.services.store.sessions() as s:
        return {r.key: r.count for r in s.scalars(select(RateLimit))}


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, str]:
    return {f"a-{uuid.uuid4().hex[:8]}": "key-a-" + uuid.uuid4().hex,
            f"b-{uuid.uuid4().hex[:8]}": "key-b-" + uuid.uuid4().hex}


def test_over_limit_api_key_gets_429_and_another_key_does_not(tmp_path: Path,
                                                               keys: dict[str, str]) -> None:
    (a_name, a), (_, b) = keys.items()
    app = _app(tmp_path, 5, api_keys_file=write_api_keys(tmp_path, keys))
    with TestClient(app, base_url=BASE_URL) as c:
        assert [c.get("/groups", headers=_auth(a)).status_code for _ in range(5)] == [200] * 5
        r = c.get("/groups", headers=_auth(a))
        assert r.status_code == 429
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.headers["Retry-After"] == "50"
        body = r.json()
        assert body["status"] == 429 and "SARCOMA_CDS_RATE_LIMIT" in body["detail"]
        assert body["instance"].startswith("urn:request:")
        assert c.get("/groups", headers=_auth(b)).status_code == 200
        assert c.get("/healthz").status_code == 200  # open routes are not counted
        # the next window serves the client again
        app.state.rate_limiter.clock = lambda: NOW + 60
        assert c.get("/groups", headers=_auth(a)).status_code == 200
    assert _rows(app)[f"apikey:{a_name}"] == 1


def test_two_instances_on_one_database_share_the_count(tmp_path: Path,
                                                       keys: dict[str, str]) -> None:
    (_, a), _ = keys.items()
    key_file = write_api_keys(tmp_path, keys)
    db = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    one = _app(tmp_path / "one", 6, db=db, api_keys_file=key_file)
    two = _app(tmp_path / "two", 6, db=db, api_keys_file=key_file)
    with TestClient(one, base_url=BASE_URL) as c1, TestClient(two, base_url=BASE_URL) as c2:
        got = [c.get("/groups", headers=_auth(a)).status_code for c in (c1, c2) * 3]
        assert got == [200] * 6
        assert c1.get("/groups", headers=_auth(a)).status_code == 429
        assert c2.get("/groups", headers=_auth(a)).status_code == 429


@pytest.mark.postgres
def test_two_instances_share_the_count_on_postgresql(tmp_path: Path,
                                                     keys: dict[str, str]) -> None:
    db = pg_url_or_skip()
    (_, a), _ = keys.items()
    key_file = write_api_keys(tmp_path, keys)
    one = _app(tmp_path / "one", 4, db=db, api_keys_file=key_file)
    two = _app(tmp_path / "two", 4, db=db, api_keys_file=key_file)
    with TestClient(one, base_url=BASE_URL) as c1, TestClient(two, base_url=BASE_URL) as c2:
        got = [c.get("/groups", headers=_auth(a)).status_code for c in (c1, c2) * 2]
        assert got == [200] * 4
        assert c2.get("/groups", headers=_auth(a)).status_code == 429


def test_cds_clients_are_limited_each_on_its_own(tmp_path: Path) -> None:
    from tests.test_cds_hooks import hook_request

    noisy, quiet = Signer(iss="https://noisy.example.org"), Signer(iss="https://quiet.example.org")
    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps({"clients": [{"iss": s.iss, "jwks": s.jwks}
                                               for s in (noisy, quiet)]}))
    app = _app(tmp_path, 2, clients_file=clients)
    path = "/cds-services/sarcoma-treatment"
    with TestClient(app, base_url=BASE_URL) as c:
        def call(s: Signer) -> int:
            return c.post(path, json=hook_request("patient-view"),
                          headers=_auth(s.token(BASE_URL + path))).status_code
        assert [call(noisy), call(noisy)] == [200, 200]
        assert call(noisy) == 429
        assert call(quiet) == 200


def test_anonymous_local_callers_are_not_limited_and_write_nothing(tmp_path: Path) -> None:
    app = _app(tmp_path, 2)
    with TestClient(app, base_url=BASE_URL) as c:
        assert {c.get("/groups").status_code for _ in range(10)} == {200}
    assert _rows(app) == {}


def test_limit_off_writes_nothing(tmp_path: Path, keys: dict[str, str]) -> None:
    (_, a), _ = keys.items()
    app = _app(tmp_path, 0, api_keys_file=write_api_keys(tmp_path, keys))
    with TestClient(app, base_url=BASE_URL) as c:
        assert {c.get("/groups", headers=_auth(a)).status_code for _ in range(20)} == {200}
    assert _rows(app) == {}


def test_the_count_is_claimed_in_chunks(tmp_path: Path, keys: dict[str, str]) -> None:
    """6,000 a minute is 100 a second: 30 requests in one window are one database claim of
    100 (one write), not 30 writes."""
    (a_name, a), _ = keys.items()
    app = _app(tmp_path, 6000, api_keys_file=write_api_keys(tmp_path, keys))
    with TestClient(app, base_url=BASE_URL) as c:
        assert {c.get("/groups", headers=_auth(a)).status_code for _ in range(30)} == {200}
    assert _rows(app) == {f"apikey:{a_name}": 100}

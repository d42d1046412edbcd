"""The service's routers (ADR 0104): the order of checks and the published operation ids that
the split into routers by surface must keep."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).parent))
from conftest_service import BASE_URL, make_settings, write_api_keys
from sarcoma_cds.interfaces.api import create_app

AUTH = {"Authorization": "Bearer secret-ward-key"}


@pytest.fixture
def keyed(tmp_path: Path) -> Any:
    keys = write_api_keys(tmp_path, {"ward": "secret-ward-key"})
    settings = make_settings(tmp_path, api_keys_file=keys)
    with TestClient(create_app(settings), base_url=BASE_URL) as c:
        yield c


def test_the_key_is_checked_before_the_body_is_read(keyed: TestClient) -> None:
    assert keyed.post("/recommendations", content=b"{not json").status_code == 401
    assert keyed.post("/recommendations", content=b"{not json", headers=AUTH).status_code == 400


def test_an_invalid_audit_query_is_422_with_or_without_a_key(keyed: TestClient) -> None:
    assert keyed.get("/audit?limit=0").status_code == 422
    assert keyed.get("/audit?limit=0", headers=AUTH).status_code == 422
    assert keyed.get("/audit?limit=1").status_code == 401


def test_an_unknown_cds_service_is_404_before_its_token_is_checked(keyed: TestClient) -> None:
    r = keyed.post("/cds-services/no-such-service", json={})
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")


def test_operation_ids_are_stable(keyed: TestClient) -> None:
    spec = keyed.get("/openapi.json").json()
    ids = sorted(op["operationId"] for path in spec["paths"].values() for op in path.values())
    assert ids == sorted([
        "api_index_api_get", "healthz_healthz_get", "version_version_get", "groups_groups_get",
        "group_groups__group_id__get", "post_recommendation_recommendations_post",
        "post_fhir_fhir_recommendations_post", "audit_audit_get", "audit_one_audit__audit_id__get",
        "cds_discovery_cds_services_get", "cds_call_cds_services__service_id__post",
        "cds_feedback_cds_services__service_id__feedback_post",
    ])

"""Property-based API test: schemathesis against the app's OpenAPI (in-process ASGI): no 5xx."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).parent))
from conftest_service import BASE_URL, make_settings
from sarcoma_cds.interfaces.api import create_app

_tmp = Path(tempfile.mkdtemp(prefix="sarcoma-schemathesis-"))
APP = create_app(make_settings(_tmp, base_url=BASE_URL))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case) -> None:  # type: ignore[no-untyped-def]
    response = case.call()
    assert response.status_code < 500, (
        case.method,
        case.path,
        response.status_code,
        response.text[:500],
    )

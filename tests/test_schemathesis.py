"""Property-based API tests: schemathesis against the app's OpenAPI (in-process ASGI).

Positive cases (valid by the schema) and negative cases (violating it: wrong types, missing
fields, bodies that are not JSON, NUL characters) must never get a 5xx; a refused request gets a
problem document (RFC 7807) that says what was wrong (issue 12: "schemathesis with negative cases
too").
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig

sys.path.insert(0, str(Path(__file__).parent))
from conftest_service import BASE_URL, make_settings
from sarcoma_cds.interfaces.api import create_app

_tmp = Path(tempfile.mkdtemp(prefix="sarcoma-schemathesis-"))
APP = create_app(make_settings(_tmp, base_url=BASE_URL))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


def _negative_config() -> SchemathesisConfig:
    config = SchemathesisConfig()
    config.projects.default.generation.update(modes=[GenerationMode.NEGATIVE], allow_x00=True)
    return config


negative = schemathesis.openapi.from_asgi("/openapi.json", APP, config=_negative_config())


def _check(case, response) -> None:  # type: ignore[no-untyped-def]
    where = (case.method, case.path, response.status_code, response.text[:500])
    assert response.status_code < 500, where
    if response.status_code >= 400 and case.path not in ("/", "/api/docs", "/api/redoc"):
        ctype = response.headers.get("content-type") or [""]
        ctype = ctype[0] if isinstance(ctype, list) else ctype
        assert ctype.startswith(("application/problem+json", "text/html")), where


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case) -> None:  # type: ignore[no-untyped-def]
    _check(case, case.call())


@negative.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_negative_cases_refused_cleanly(case) -> None:  # type: ignore[no-untyped-def]
    _check(case, case.call())

"""Shared test settings.

Tests that need a real service (PostgreSQL, Chromium, Spark/Java) skip with a reason
when it is absent on a developer machine, and fail instead when
SARCOMA_CDS_REQUIRE_SERVICES=1 (set by .ci/run), so CI can never pass by skipping.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "dev", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def require_service(available: bool, what: str) -> None:
    """Skip (developer machine) or fail (CI) when a real service is missing."""
    if available:
        return
    if os.environ.get("SARCOMA_CDS_REQUIRE_SERVICES") == "1":
        pytest.fail(
            f"{what} is required in CI (SARCOMA_CDS_REQUIRE_SERVICES=1) but is not available"
        )
    pytest.skip(f"{what} not available on this machine")

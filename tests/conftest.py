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


CHROMIUM = os.environ.get("SARCOMA_CDS_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def chromium_browser():  # type: ignore[no-untyped-def]
    """One Chromium (Playwright's sync API) for the whole test session. Playwright's sync API
    runs its own event loop: a second ``sync_playwright()`` while one is open fails ("Sync API
    inside the asyncio loop"), so every browser test shares this one (tests/browser's
    ``browser`` fixture is this browser)."""
    import shutil
    from pathlib import Path

    require_service(Path(CHROMIUM).exists() and shutil.which(CHROMIUM) is not None,
                    f"Chromium ({CHROMIUM}; apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require_service(False, "the playwright Python package")
        raise
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--disable-dev-shm-usage"],
        )
        yield b
        b.close()

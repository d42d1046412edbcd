"""Fixtures for the browser tests: a real uvicorn server and Debian's Chromium via Playwright.

The tests are skipped (with the reason) when Chromium or Playwright is missing, unless
SARCOMA_CDS_REQUIRE_SERVICES=1, as in CI, where a missing browser is a failure.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("SARCOMA_CDS_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
AXE = HERE / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = ROOT / "test-artifacts" / "screenshots"
REQUIRED = os.environ.get("SARCOMA_CDS_REQUIRE_SERVICES") == "1"

VIEWPORTS = {"laptop": {"width": 1366, "height": 900}, "tablet": {"width": 820, "height": 1180}}


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason} (SARCOMA_CDS_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_app(data_dir: Path) -> Any:
    """The real application (service + web) when it exists, else the web app alone."""
    os.environ["SARCOMA_CDS_DATA_DIR"] = str(data_dir)
    try:
        from sarcoma_cds.interfaces.api.app import create_app
    except ImportError:
        if REQUIRED:
            raise
        from sarcoma_cds.interfaces.web import create_web_app

        return create_web_app(None)
    return create_app()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.security.uvicorn_live import live_server

    with live_server(build_app(tmp_path_factory.mktemp("web-data"))) as url:
        yield url


@pytest.fixture(scope="session")
def browser(chromium_browser: Any) -> Any:
    """The session's Chromium (tests/conftest.py: one Playwright instance for every test)."""
    return chromium_browser


@pytest.fixture
def helpers() -> Any:
    """shot(page, name), axe(page, what) and the viewport sizes, for the tests."""

    class H:
        viewports = VIEWPORTS
        shot = staticmethod(shot)
        shot_element = staticmethod(shot_element)
        axe = staticmethod(axe_check)

    return H


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Any]:
    ctx = browser.new_context(viewport=VIEWPORTS["laptop"], base_url=server)
    pg = ctx.new_page()
    pg.set_default_timeout(10_000)
    yield pg
    ctx.close()


def shot(page: Any, name: str, full_page: bool = True) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    if not full_page:
        page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(path), full_page=full_page)
    return path


def shot_element(locator: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    locator.screenshot(path=str(path))
    return path


def axe_check(page: Any, what: str) -> None:
    """Run axe-core in the page; fail on serious or critical violations."""
    if not AXE.exists():
        _unavailable(f"axe-core not installed ({AXE}); run `npm ci` in tests/browser")
    # evaluated by the test driver, not added as an inline <script>: the pages' CSP runs no
    # inline script without its nonce (issue 12), and it stays on during these tests
    page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate(
        "async () => { const r = await axe.run(document, {resultTypes: ['violations']});"
        " return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))})); }"
    )
    bad = [v for v in result if v["impact"] in ("serious", "critical")]
    assert not bad, f"axe-core violations on {what}: {bad}"

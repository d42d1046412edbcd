"""Sign-in in Chromium (issue 12): a real OpenID provider (tests/oidc), a real uvicorn server
with sign-in configured; the user signs in on the provider's login page, saves a case and
records a decision, which shows the signed-in name (the form has no name field)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.oidc_provider import Provider, running_provider

GIST = {"histology": "gist", "primary_site": "stomach", "pdgfra_mutation": "d842v",
        "metastasis": "M1"}


@pytest.fixture(scope="module")
def signin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Provider]]:
    from tests.security.uvicorn_live import live_server

    from sarcoma_cds.interfaces.api.app import create_app
    from sarcoma_cds.interfaces.api.settings import Settings

    with running_provider() as oidc:
        data = Path(tmp_path_factory.mktemp("signin-data"))
        settings = Settings.from_env({**oidc.env(), "SARCOMA_CDS_DATA_DIR": str(data)})
        # (the provider knows the app's redirect URI, so the app listens on its port)
        with live_server(create_app(settings), port=oidc.app_port) as url:
            yield url, oidc


def test_sign_in_and_record_a_decision_in_chromium(browser: Any, helpers: Any,
                                                   signin_server: tuple[str, Provider]) -> None:
    from sarcoma_cds.interfaces.web.forms import facts_query

    base, oidc = signin_server
    ctx = browser.new_context(viewport=helpers.viewports["laptop"], base_url=base)
    page = ctx.new_page()
    page.set_default_timeout(10_000)
    try:
        page.goto("/cases")
        page.wait_for_url(re.compile(re.escape(oidc.issuer) + "/interaction/"))
        page.fill("input[name=login]", "alice")
        page.fill("input[name=password]", "any password")
        page.get_by_role("button", name="Sign-in").click()
        page.get_by_role("button", name="Continue").click()  # the provider's consent page
        page.wait_for_url(base + "/cases")
        assert "Alice Clinician" in page.locator(".who").inner_text()
        page.goto("/patient?" + facts_query(GIST))
        page.get_by_role("button", name="Show recommendation").click()
        page.wait_for_selector("#result-h")
        page.fill("#case-label", "Sign-in test")
        page.get_by_role("button", name=re.compile("Save case")).click()
        page.wait_for_url(re.compile(r"/cases/[0-9a-f-]+$"))
        assert page.locator("#d-clinician").count() == 0  # no typed author any more
        assert "Alice Clinician" in page.locator(".recorded-by").inner_text()
        page.get_by_label("Accepted the recommendation").check()
        page.get_by_role("button", name="Record decision").click()
        page.locator(".decisions").wait_for()
        assert "Alice Clinician (oidc:alice)" in page.locator(".decisions").inner_text()
        helpers.axe(page, "case view, signed in")
        page.get_by_role("button", name="Sign out").click()
        # sign-out at the provider too (RP-initiated logout): its confirmation page, then home
        page.wait_for_url(re.compile(re.escape(oidc.issuer) + "/session/end"))
        page.get_by_role("button", name="Yes, sign me out").click()
        page.wait_for_url(base + "/")
        assert page.locator(".who").inner_text().strip() == "Sign in"
        r = ctx.request.get(base + "/cases", max_redirects=0)
        assert r.status == 303 and r.headers["location"].startswith("/login")
    finally:
        ctx.close()

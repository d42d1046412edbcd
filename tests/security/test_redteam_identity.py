"""Red-team review of sign-in (issue 12): a user name with a NUL character, chosen by the user
at a real OpenID provider (``tests/oidc/server.mjs`` admits any login name, as a provider that
lets users edit their display name does), signed in to an app on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest_service import pg_url_or_skip
from tests.oidc_provider import Provider
from tests.security.test_identity import make_client, oidc_settings, signed_in


@pytest.mark.postgres
def test_a_nul_in_the_users_name_does_not_break_sign_in_on_postgresql(
    tmp_path: Path, oidc: Provider,
) -> None:
    """PostgreSQL text refuses NUL: the session row of a user named ``mallory\\x00`` failed
    the callback with a 500 (the audit store replaces NUL; the session store did not)."""
    settings = oidc_settings(tmp_path, oidc, database_url=pg_url_or_skip(), oidc_allowed="*")
    with make_client(settings) as c:
        r = signed_in(c, "mallory\x00x")
        assert r.status_code == 303, r.text[:300]
        page = c.get("/cases")
        assert page.status_code == 200 and "mallory" in page.text

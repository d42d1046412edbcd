"""Red-team review of sign-in (issue 12): a user name with a NUL character, chosen by the user
at a real OpenID provider (``tests/oidc/server.mjs`` admits any login name, as a provider that
lets users edit their display name does), signed in to an app on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest_service import pg_url_or_skip
from tests.oidc_provider import Provider, sign_in
from tests.security.test_identity import (  # noqa: F401 (the SMART fixtures)
    fhir,
    make_client,
    oidc_settings,
    signed_in,
    smart_app,
    smart_idp,
)


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


# ------------------------------------------------------------------ SMART launch by a patient

def test_a_patients_standalone_launch_opens_no_session(
        smart_app: TestClient, fhir: str,  # noqa: F811 (the imported fixtures)
        tmp_path: Path) -> None:
    """SMART standalone launch is the patient-access flow: a patient signs in at the EHR's
    portal (``fhirUser`` = ``Patient/...``) through the same authorization server. The launch
    gave every launching user the viewer + clinician roles: the patient could list every saved
    case of every patient, download their facts and record tumour-board decisions."""
    from tests.security.test_identity import save_case, session_cookie

    # a clinician's saved case of another patient
    with TestClient(smart_app.app, base_url="http://testserver") as clinician:
        r = clinician.get("/smart/launch", params={"iss": fhir, "launch": "l-1"},
                          follow_redirects=False)
        back = sign_in(r.headers["location"], "alice", "http://testserver/smart/callback")
        assert clinician.get(back).status_code == 200
    # the patient's own standalone launch at the same FHIR server
    r = smart_app.get("/smart/launch", params={"iss": fhir}, follow_redirects=False)
    back = sign_in(r.headers["location"], "patient-mallory", "http://testserver/smart/callback")
    page = smart_app.get(back, follow_redirects=False)
    assert page.status_code == 403, page.text[:300]
    assert session_cookie(smart_app) is None
    assert smart_app.get("/cases", follow_redirects=False).status_code in (303, 401, 403)
    assert save_case(smart_app).status_code in (303, 403)  # (303: to the sign-in page)
    assert smart_app.get("/cases", follow_redirects=False).headers.get(
        "location", "").startswith("/login")


# ------------------------------------------------------------------ admission by e-mail

def test_an_unverified_email_does_not_admit_its_claimant(tmp_path: Path,
                                                         oidc: Provider) -> None:
    """``SARCOMA_CDS_OIDC_ALLOWED`` names a colleague by e-mail. An account at the provider
    that claims that e-mail without having verified it (the claim ``email_verified`` absent,
    as several providers send; "nOAuth") was admitted: only ``email_verified: false`` was
    refused."""
    settings = oidc_settings(tmp_path, oidc, oidc_allowed="alice@example.org")
    with make_client(settings) as c:
        r = signed_in(c, "unverified-alice")
        assert r.status_code == 403, r.text[:300]
        assert c.get("/cases", follow_redirects=False).status_code == 303  # to the sign-in
    with make_client(settings) as c:  # the real alice (verified e-mail) is admitted
        assert signed_in(c, "alice").status_code == 303
        assert c.get("/cases").status_code == 200


# ------------------------------------------------------------------ admission by user name

def test_a_user_name_equal_to_an_allowed_group_does_not_admit(tmp_path: Path,
                                                              oidc: Provider) -> None:
    """The allow-list names the group ``sarcoma-viewers``. An account whose user name (a
    preferred_username the user chose at registration; OpenID Connect says it is not unique)
    is ``sarcoma-viewers``, in no group, was admitted and saw every saved case."""
    with make_client(oidc_settings(tmp_path, oidc)) as c:
        r = signed_in(c, "handle-sarcoma-viewers")
        assert r.status_code == 403, r.text[:200]


# ------------------------------------------------------------------ launch floods

def test_anonymous_launches_do_not_each_fetch_the_smart_configuration(
        smart_app: TestClient, fhir: str) -> None:  # noqa: F811 (the imported fixtures)
    """``/smart/launch`` is public. Every launch fetched the FHIR server's
    ``.well-known/smart-configuration`` in a worker thread (no cache): an anonymous flood made
    the service hammer the EHR and, with a slow EHR, held the threads every synchronous route
    (``/healthz`` included) shares. Now one fetch serves the launches for a while, and a failed
    fetch is not retried at every launch."""
    from tests.security.test_identity import _Fhir

    def fetches() -> int:
        return sum(1 for path, _ in _Fhir.seen if "smart-configuration" in path)

    for _ in range(30):
        r = smart_app.get("/smart/launch", params={"iss": fhir}, follow_redirects=False)
        assert r.status_code == 302
    assert fetches() == 1, fetches()
    # a FHIR server whose configuration is broken: one fetch, then refusals from memory
    other = fhir.replace("/fhir", "/fhir2")
    settings = smart_app.app.state.settings  # type: ignore[attr-defined]
    from sarcoma_cds.interfaces.api.app import create_app

    settings.smart_issuers = other
    before = len(_Fhir.seen)
    with TestClient(create_app(settings), base_url="http://testserver") as c:
        for _ in range(30):
            r = c.get("/smart/launch", params={"iss": other}, follow_redirects=False)
            assert r.status_code == 503
    assert len(_Fhir.seen) - before == 1


def test_sign_in_starts_do_not_each_retry_a_failed_discovery(tmp_path: Path) -> None:
    """``/login`` is public. While the provider's discovery fails (down, or answering errors),
    every sign-in start retried it in a worker thread, one after the other under a lock: a
    flood of ``/login`` held the threads every synchronous route shares and hammered the
    provider. A failed discovery is now not retried for a few seconds."""
    from tests.security.fhir_servers import recorder

    with recorder(prefix="/idp") as idp:  # answers 404 to everything: discovery fails
        settings = oidc_settings_for(tmp_path, idp.base + "/idp")
        with make_client(settings) as c:
            for _ in range(30):
                r = c.get("/login", follow_redirects=False)
                assert r.status_code == 503, r.status_code
        assert len(idp.hits) == 1, len(idp.hits)


def oidc_settings_for(tmp_path: Path, issuer: str) -> object:
    from sarcoma_cds.interfaces.api.settings import Settings
    from tests.conftest_service import TEST_HOSTS

    s = Settings.from_env({"SARCOMA_CDS_OIDC_ISSUER": issuer,
                           "SARCOMA_CDS_OIDC_CLIENT_ID": "sarcoma-cds",
                           "SARCOMA_CDS_OIDC_ALLOWED": "*",
                           "SARCOMA_CDS_DATA_DIR": str(tmp_path / "data")})
    s.allowed_hosts = TEST_HOSTS
    return s

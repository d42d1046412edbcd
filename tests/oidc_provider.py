"""A real OpenID provider for the sign-in tests: ``tests/oidc/server.mjs`` (npm package
``oidc-provider``) started with node on a free port, and a driver for its login and consent
pages that acts as a user's browser would (httpx, following the provider's forms).

Import explicitly (not a conftest plugin). Skips with a reason when node or the npm packages
are absent, unless SARCOMA_CDS_REQUIRE_SERVICES=1 (CI), where that is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest

HERE = Path(__file__).resolve().parent / "oidc"
REQUIRED = os.environ.get("SARCOMA_CDS_REQUIRE_SERVICES") == "1"
CLIENT_ID = "sarcoma-cds"
CLIENT_SECRET = "test-client-secret-not-for-production"
PUBLIC_CLIENT_ID = "sarcoma-cds-public"
ALLOWED = "sarcoma-clinicians,sarcoma-audit,sarcoma-viewers"
ROLES = "clinician=sarcoma-clinicians;auditor=sarcoma-audit"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason} (SARCOMA_CDS_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


@dataclass
class Provider:
    issuer: str
    app_port: int  # a port reserved for a real server whose callback the provider accepts

    def env(self, **over: str) -> dict[str, str]:
        """The sign-in settings of a sarcoma-cds app using this provider."""
        e = {"SARCOMA_CDS_OIDC_ISSUER": self.issuer, "SARCOMA_CDS_OIDC_CLIENT_ID": CLIENT_ID,
             "SARCOMA_CDS_OIDC_CLIENT_SECRET": CLIENT_SECRET, "SARCOMA_CDS_OIDC_ALLOWED": ALLOWED,
             "SARCOMA_CDS_OIDC_ROLES": ROLES}
        e.update(over)
        return {k: v for k, v in e.items() if v}


@contextmanager
def running_provider(redirect_uris: Sequence[str] = (), **env_over: str) -> Iterator[Provider]:
    node = shutil.which("node")
    if node is None:
        _unavailable("node is not installed (apt-get install nodejs npm)")
    if not (HERE / "node_modules" / "oidc-provider").is_dir():
        _unavailable("oidc-provider is not installed (cd tests/oidc && npm install)")
    port, app_port = free_port(), free_port()
    uris = [*redirect_uris, "http://testserver/auth/callback", "http://cds.test/auth/callback",
            "https://cds.test/auth/callback", f"http://127.0.0.1:{app_port}/auth/callback",
            "http://testserver/smart/callback"]
    env = dict(os.environ, PORT=str(port), REDIRECT_URIS=",".join(uris), **env_over)
    proc = subprocess.Popen([str(node), "server.mjs"], cwd=HERE, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "READY <issuer>" (or nothing when node failed)
        if not line.startswith("READY "):
            raise RuntimeError(f"the OpenID provider did not start: {line!r}")
        yield Provider(issuer=line.split()[1], app_port=app_port)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


_FORM = re.compile(r'<form[^>]*action="([^"]+)"[^>]*method="post"', re.I)


def sign_in(authorize_url: str, user: str, callback_prefix: str,
            browser: httpx.Client | None = None) -> str:
    """Act as the user's browser at the provider: open the authorization URL, fill in the
    login form (any password) and confirm the consent page. Returns the URL the provider
    sends the browser back to (``<callback_prefix>?code=...&state=...``). ``browser``: keep
    the provider's cookies (its session) in this client, as one browser would."""
    with (nullcontext(browser) if browser is not None
          else httpx.Client(follow_redirects=False, timeout=10)) as b:
        url = authorize_url
        for _ in range(12):
            if url.startswith(callback_prefix):
                return url
            r = b.get(url)
            while r.status_code in (302, 303) and not r.headers["location"].startswith(
                    callback_prefix):
                r = b.get(urljoin(url, r.headers["location"]))
                url = str(r.url)
            if r.status_code in (302, 303):
                return str(r.headers["location"])
            m = _FORM.search(r.text)
            if m is None:
                raise AssertionError(f"no form at the provider ({r.status_code}): {r.text[:300]}")
            action = urljoin(str(r.url), unescape(m.group(1)))
            data = ({"prompt": "login", "login": user, "password": "any"}
                    if 'name="prompt" value="login"' in r.text else {"prompt": "consent"})
            r = b.post(action, data=data)
            if r.status_code not in (302, 303):
                raise AssertionError(f"the provider refused the form ({r.status_code})")
            url = urljoin(action, r.headers["location"])
        raise AssertionError("the sign-in did not come back to the callback")


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")

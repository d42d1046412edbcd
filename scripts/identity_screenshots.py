#!/usr/bin/env python3
"""Screenshots of the identity pages (issue 12) in Debian's Chromium, to look at them.

Starts two copies of the app (uvicorn, temporary data directories): one with sign-in configured
(the provider is never contacted: sessions are made in the store, as a sign-in would) and one
with API keys only. Captures, at a laptop (1366x768) and a tablet (768x1024) width: the page
header with the signed-in user, "Sign-in failed", the 403 "role missing" page, the SMART launch
of a CDS card whose record is not shown (its notice), and "Sign-in is not configured". Run from
the repository root: ``.venv/bin/python scripts/identity_screenshots.py --out /tmp/shots``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VIEWPORTS = {"laptop": (1366, 768), "tablet": (768, 1024)}


def start(settings: Any) -> tuple[str, Any]:
    import uvicorn

    from sarcoma_cds.interfaces.api.app import create_app

    app = create_app(settings)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=srv.run, daemon=True).start()
    while not srv.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("/tmp/identity-shots"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    from sarcoma_cds.interfaces.api.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        signin, app = start(Settings(
            data_dir=Path(tmp) / "signin", oidc_issuer="http://127.0.0.1:9",
            oidc_client_id="sarcoma-cds", oidc_allowed="*", oidc_roles="clinician=c"))
        keys = Path(tmp) / "keys.txt"
        keys.write_text(hashlib.sha256(b"k").hexdigest() + " ward\n")
        keyed, _ = start(Settings(data_dir=Path(tmp) / "keyed", api_keys_file=keys))
        sessions = app.state.identity.sessions
        alice = sessions.create(kind="oidc", subject="alice", display_name="Alice Clinician",
                                roles=["clinician", "viewer"], lifetime=timedelta(hours=1))
        audrey = sessions.create(kind="oidc", subject="audrey", display_name="Audrey Auditor",
                                 roles=["auditor"], lifetime=timedelta(hours=1))
        shots = {
            "signed-in-header": (alice, signin + "/cases"),
            "signed-in-form": (alice, signin + "/patient"),
            "sign-in-failed": (None, signin + "/auth/callback?code=x&state=y"),
            "role-missing": (audrey, signin + "/cases"),
            "sign-in-not-configured": (None, keyed + "/cases"),
        }
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=["--no-sandbox"])
            for vp, (w, h) in VIEWPORTS.items():
                for name, (token, url) in shots.items():
                    ctx = browser.new_context(viewport={"width": w, "height": h})
                    if token:
                        ctx.add_cookies([{"name": "sarcoma-session", "value": token,
                                          "url": signin}])
                    page = ctx.new_page()
                    page.goto(url)
                    page.screenshot(path=str(args.out / f"identity-{name}-{vp}.png"),
                                    full_page=True)
                    ctx.close()
            browser.close()
    print(json.dumps(sorted(str(x) for x in args.out.glob("identity-*.png")), indent=1))


if __name__ == "__main__":
    main()

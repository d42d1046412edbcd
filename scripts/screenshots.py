#!/usr/bin/env python3
"""Refresh docs/screenshots/ from a running copy of the web app in Debian's Chromium.

Starts the full application (uvicorn, a temporary data directory), saves a few example
patients as cases, and screenshots the key pages at a laptop (1366x768) and a tablet
(768x1024) width. Run from the repository root: ``.venv/bin/python scripts/screenshots.py``
(``--out DIR`` to write elsewhere, e.g. to look at pages while changing them).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "patients"
VIEWPORTS = {"laptop": (1366, 768), "tablet": (768, 1024)}
CASES = {
    "extremity-stage-iii": "03-extremity.stage_iii_resectable.json",
    "gist-d842v": "gist-pdgfra-d842v-metastatic.json",
    "missing-resectability": "missing-resectability.json",
    "gist-resectable": "13-gist.resectable_significant_morbidity.json",
}
BOARDS = ("extremity-stage-iii", "gist-d842v")  # board sheets captured (the others look alike)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def save_case(base: str, facts: dict[str, Any], label: str) -> str:
    """POST the facts as the form would (with the form's CSRF token and cookie); the answer
    redirects to /cases/{id}."""
    import re

    import httpx

    from sarcoma_cds.interfaces.web.forms import form_values

    with httpx.Client(base_url=base) as client:
        page = client.get("/patient", headers={"accept": "text/html"}).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        data = {**form_values(facts), "case_label": [label]}
        if token:
            data["csrf_token"] = [token.group(1)]
        r = client.post("/cases", data=data)
        if r.status_code == 303:
            return str(r.headers["location"])
        raise RuntimeError(f"saving the case did not redirect ({r.status_code})")


def start_server(data_dir: Path) -> str:
    import uvicorn

    os.environ["SARCOMA_CDS_DATA_DIR"] = str(data_dir)
    from sarcoma_cds.interfaces.api.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    config = uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    threading.Thread(target=srv.run, daemon=True).start()
    while not srv.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}"


def readme_shots(browser: Any, base: str, pages: dict[str, str], out: Path) -> None:
    """The first-screen views the README shows (laptop), the printed board and the diagram."""
    ctx = browser.new_context(viewport={"width": 1366, "height": 768})
    page = ctx.new_page()

    def go(url: str) -> None:
        page.goto(base + url if url.startswith("/") else url)

    go(pages["case-gist-d842v"])
    page.screenshot(path=str(out / "web-gist-d842v-laptop.png"))
    page.locator(".diagram-panel").screenshot(path=str(out / "web-diagram-laptop.png"))
    go(pages["case-extremity-stage-iii"])
    page.locator(".diagram-panel").screenshot(path=str(out / "web-diagram-extremity-laptop.png"))
    go(pages["case-missing-resectability"])
    page.get_by_role("link", name="What would change it").first.click()
    page.screenshot(path=str(out / "web-what-if-laptop.png"))
    go(pages["board-gist-d842v"])
    page.emulate_media(media="print")
    page.screenshot(path=str(out / "web-board-print.png"), full_page=True)
    ctx.close()


def expired_shots(browser: Any, base: str, out: Path) -> None:
    """The page a form posted without its CSRF token gets (e.g. after the cookie expired)."""
    for vp, (w, h) in VIEWPORTS.items():
        ctx = browser.new_context(viewport={"width": w, "height": h})
        page = ctx.new_page()
        page.goto(base + "/patient")
        ctx.clear_cookies()
        page.locator("form[method=post] button[type=submit]").first.click()
        page.wait_for_load_state()
        page.screenshot(path=str(out / f"web-form-expired-{vp}.png"), full_page=True)
        ctx.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        base = start_server(Path(tmp))
        pages: dict[str, str] = {"home": "/", "form": "/patient",
                                 "group": "/groups/gist.unresectable"}
        for name, file in CASES.items():
            url = save_case(base, json.loads((EXAMPLES / file).read_text()), name.replace("-", " "))
            pages[f"case-{name}"] = url
            if name in BOARDS:
                pages[f"board-{name}"] = url + "/board"
        for name in ("gist-d842v", "extremity-stage-iii"):
            pages[f"patient-summary-{name}"] = pages[f"case-{name}"] + "/patient-summary"
        pages["search-typo"] = "/search?q=avaprtinib"
        pages["tumour-board"] = "/board"
        pages["tumour-board-sheet"] = "/board/1"
        ids = [pages[f"case-{n}"].rsplit("/", 1)[1]
               for n in ("extremity-stage-iii", "missing-resectability")]
        pages["compare"] = "/compare?" + "&".join(f"id={i}" for i in ids)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            for vp, (w, h) in VIEWPORTS.items():
                ctx = browser.new_context(viewport={"width": w, "height": h})
                page = ctx.new_page()
                for name, url in pages.items():
                    page.goto(base + url if url.startswith("/") else url)
                    page.screenshot(path=str(args.out / f"web-{name}-{vp}.png"), full_page=True)
                ctx.close()
            readme_shots(browser, base, pages, args.out)
            expired_shots(browser, base, args.out)
            browser.close()
    shrink(args.out)
    print(f"{(len(pages) + 1) * len(VIEWPORTS) + 5} screenshots in {args.out}")


def shrink(out: Path) -> None:
    """256-colour palettes (Pillow, a WeasyPrint dependency): the PNGs stay small in git."""
    try:
        from PIL import Image
    except ImportError:
        return
    for png in out.glob("web-*.png"):
        with Image.open(png) as im:
            small = im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        small.save(png, optimize=True)


if __name__ == "__main__":
    main()

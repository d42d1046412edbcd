"""API documentation pages (Swagger UI, ReDoc) served without any public CDN.

FastAPI's default ``/docs`` pages load their scripts, styles and (ReDoc) Google Fonts from
public CDNs, so on a hospital network without internet they stay blank. The assets are taken
from the ``fastapi-offline`` wheel (MIT; it ships swagger-ui-dist, Apache-2.0, and ReDoc, MIT)
and served from ``/api/docs-static``; ReDoc uses the system fonts. Without that package the
pages fall back to FastAPI's CDN defaults (and say so in the log).
"""

from __future__ import annotations

import importlib.resources
import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

log = logging.getLogger(__name__)

ASSETS_URL = "/api/docs-static"


def assets_dir() -> Path | None:
    """The folder holding swagger-ui-bundle.js, swagger-ui.css and redoc.standalone.js, if
    installed."""
    try:
        d = Path(str(importlib.resources.files("fastapi_offline") / "static"))
    except ModuleNotFoundError:
        return None
    return d if (d / "swagger-ui-bundle.js").is_file() else None


def _nonced(request: Request, page: HTMLResponse) -> HTMLResponse:
    """The page with this request's CSP nonce on its inline scripts (the Content-Security-Policy
    runs no other inline script; see ``hardening``)."""
    nonce = str(getattr(request.state, "csp_nonce", ""))
    if not nonce:
        return page
    body = bytes(page.body).decode("utf-8").replace("<script>", f'<script nonce="{nonce}">')
    return HTMLResponse(body, status_code=page.status_code)


def install(app: FastAPI, docs_url: str = "/api/docs", redoc_url: str = "/api/redoc") -> None:
    """Add the two documentation pages to ``app`` (create it with ``docs_url=None,
    redoc_url=None``)."""
    static = assets_dir()
    title = f"{app.title} API"
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2 = docs_url + "/oauth2-redirect"
    if static is None:
        log.warning(
            "fastapi-offline is not installed: the API docs load their assets from public CDNs"
        )
    else:
        app.mount(ASSETS_URL, StaticFiles(directory=str(static)), name="api-docs-static")

    @app.get(docs_url, include_in_schema=False)
    def swagger(request: Request) -> HTMLResponse:
        if static is None:
            return _nonced(request, get_swagger_ui_html(
                openapi_url=openapi_url, title=title, oauth2_redirect_url=oauth2
            ))
        return _nonced(request, get_swagger_ui_html(
            openapi_url=openapi_url, title=title, oauth2_redirect_url=oauth2,
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png"))

    @app.get(oauth2, include_in_schema=False)
    def swagger_redirect(request: Request) -> HTMLResponse:
        return _nonced(request, get_swagger_ui_oauth2_redirect_html())

    @app.get(redoc_url, include_in_schema=False)
    def redoc() -> HTMLResponse:
        if static is None:
            return get_redoc_html(openapi_url=openapi_url, title=title, with_google_fonts=False)
        return get_redoc_html(openapi_url=openapi_url, title=title, with_google_fonts=False,
                              redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
                              redoc_favicon_url=f"{ASSETS_URL}/favicon.png")

"""The web application for clinics and sarcoma tumour boards (server-rendered pages).

``mount(app, services)`` adds the pages and their static files to the FastAPI app built by
``sarcoma_cds.interfaces.api.app.create_app``. Pages work without JavaScript; the small
script in ``static/web.js`` only adds conveniences. See docs/web.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from sarcoma_cds.interfaces.api.identity.errors import install_web_refusals
from sarcoma_cds.interfaces.web.adapter import WebBackend
from sarcoma_cds.interfaces.web.pages import MAX_UPLOAD, Pages
from sarcoma_cds.interfaces.web.routes import STATIC, UI_PREFIX, router
from sarcoma_cds.interfaces.web.routes_extra import (
    PageNotFound,
    build_extra_router,
    not_found_handler,
)

if TYPE_CHECKING:  # (the service layer needs the service extras; the pages work without them)
    from sarcoma_cds.interfaces.api.services import Services

__all__ = ["create_web_app", "mount"]

#: Public paths shared with the REST API: HTML requests go to the page, others to the API.
SHARED_PREFIXES = ("/groups",)


def _wants_html(scope: dict[str, Any]) -> bool:
    for name, value in scope.get("headers") or ():
        if name == b"accept":
            accept = value.decode("latin-1").lower()
            return "text/html" in accept
    return False


class _HtmlRewrite:
    """ASGI middleware: ``GET /groups...`` from a browser (Accept: text/html) ->
    ``/ui/groups...``."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") == "http" and scope.get("method") in ("GET", "HEAD"):
            path = scope.get("path", "")
            shared = any(path == p or path.startswith(p + "/") for p in SHARED_PREFIXES)
            if shared and _wants_html(scope):
                scope = dict(scope)
                scope["path"] = UI_PREFIX + path
                scope["raw_path"] = scope["path"].encode()
        await self.app(scope, receive, send)


def mount(app: FastAPI, services: Services | None = None) -> WebBackend:
    """Add the web pages to ``app``; ``services`` is the service layer (None: an in-memory
    fallback)."""
    backend = WebBackend(services)
    pages = Pages(backend)
    app.state.web_pages = pages
    app.include_router(router)
    app.include_router(
        build_extra_router(backend)
    )  # tumour-board mode, compare, favicon (issue 14)
    app.add_exception_handler(PageNotFound, not_found_handler(pages.templates))
    install_web_refusals(app)  # sign-in redirects and 403 pages (issue 12)
    app.mount("/static/web", StaticFiles(directory=str(STATIC)), name="web-static")
    app.add_middleware(_HtmlRewrite)
    app.state.web = backend
    # the import page accepts files up to 1 MB (MAX_UPLOAD): a body limit above that for its form,
    # so that the page itself says when a file is too large (read by create_app's
    # BodyLimitMiddleware)
    app.state.body_limits = {"/import": 2 * MAX_UPLOAD}
    return backend


def create_web_app(services: Services | None = None) -> FastAPI:
    """A stand-alone app with only the web pages (tests, or before the service exists)."""
    app = FastAPI(title="sarcoma-cds web", docs_url=None, redoc_url=None, openapi_url=None)
    mount(app, services)
    return app

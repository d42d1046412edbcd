"""Web routes added after the first release (issue 14), kept apart from ``routes.py``.

``routes.py::build_router`` holds the original pages; routes here are added by ``mount`` with
their own router, so that the two files change independently. Today: ``/favicon.ico`` (browsers
ask for it on every first load; a 404 there is a console error) and an HTML answer for a page
whose record does not exist (instead of the API's JSON problem).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

FAVICON = Path(__file__).parent / "static" / "favicon.svg"


class PageNotFound(Exception):
    """A page's record (a saved case) does not exist: answered with the HTML error page."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def build_extra_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/favicon.ico")
    def favicon() -> Response:
        # SVG under the .ico name: Chromium and Firefox accept it by its media type
        return Response(FAVICON.read_bytes(), media_type="image/svg+xml",
                        headers={"Cache-Control": "public, max-age=86400"})

    return router


def not_found_handler(templates: Jinja2Templates) -> Any:
    """Exception handler rendering ``error.html`` with 404 for :class:`PageNotFound`."""

    async def handle(request: Request, exc: Exception) -> HTMLResponse:
        msg = exc.message if isinstance(exc, PageNotFound) else "Not found."
        return templates.TemplateResponse(request, "error.html", {"title": "Not found", "message": msg},
                                          status_code=404)

    return handle

"""Refusals of the identity checks: problem documents for the API, pages for the web.

A web page refused for want of a sign-in redirects to ``/login?next=<the page>``; one refused
for want of a role answers 403 with a page naming the role; when sign-in is not configured at
all (API keys only) the page says so. The API answers 401/403 problem documents.
"""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from sarcoma_cds.interfaces.api.errors import Problem
from sarcoma_cds.interfaces.api.identity.roles import DOES


class Forbidden(Problem):
    """403: the caller is known but lacks the role the endpoint needs."""

    status = 403


class WebRefusal(Exception):
    """A web page refused by an identity check (answered by :func:`web_refusal`)."""


class SignInRequired(WebRefusal):
    def __init__(self, next_url: str) -> None:
        super().__init__("sign-in required")
        self.next_url = next_url


class RoleMissing(WebRefusal):
    def __init__(self, role: str, who: str) -> None:
        super().__init__(f"role {role} required")
        self.role = role
        self.who = who


class SignInNotConfigured(WebRefusal):
    def __init__(self) -> None:
        super().__init__("sign-in is not configured")


def safe_next(url: str | None) -> str:
    """A local path to return to after sign-in (anything else: the home page)."""
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return "/"
    if any(ord(c) < 32 for c in url):
        return "/"
    return url[:2000]


def _page(request: Request, status: int, title: str, message: str,
          action: tuple[str, str] | None = None) -> Response:
    """An error page; ``action``: (local URL, label) of the way on (e.g. sign in again)."""
    pages: Any = getattr(request.app.state, "web_pages", None)
    if pages is not None:
        url, label = action if action else (None, None)
        resp: Response = pages.render(request, "error.html", status, title=title,
                                      message=message, action_url=url, action_label=label)
        return resp
    return HTMLResponse('<!doctype html><html lang="en"><meta charset="utf-8">'
                        f"<title>{escape(title)}</title><h1>{escape(title)}</h1><p>{escape(message)}</p></html>",
                        status_code=status)


async def web_refusal(request: Request, exc: Exception) -> Response:
    if isinstance(exc, SignInRequired):
        return RedirectResponse("/login?next=" + quote(safe_next(exc.next_url), safe="/"),
                                status_code=303)
    if isinstance(exc, RoleMissing):
        return _page(request, 403, "Not allowed",
                     f"You are signed in as {exc.who}, but this page needs the {exc.role} role "
                     f"(to {DOES.get(exc.role, exc.role)}). Ask the service's administrator "
                     "for it.")
    return _page(request, 403, "Sign-in is not configured",
                 "This page shows patient data, and this server has no sign-in configured "
                 "(SARCOMA_CDS_OIDC_ISSUER and SARCOMA_CDS_OIDC_CLIENT_ID). Use the REST API "
                 "with an API key, or ask the administrator to configure sign-in.")


def install_web_refusals(app: FastAPI) -> None:
    app.add_exception_handler(WebRefusal, web_refusal)

"""Pages for browsing the guideline: home (the algorithm by site), patient groups, search."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from sarcoma_cds.interfaces.api.deps import WebUser
from sarcoma_cds.interfaces.api.identity.roles import VIEWER
from sarcoma_cds.interfaces.web.pages import UI_PREFIX, PagesDep
from sarcoma_cds.interfaces.web.present import search

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def home(request: Request, pages: PagesDep, user: WebUser) -> HTMLResponse:
    """The algorithm by site, with the most recent saved cases (for a user who may see them:
    the page itself is public)."""
    cases = pages.backend.list_cases(8) if user is not None and user.has(VIEWER) else []
    return pages.render(request, "home.html", sites=pages.by_site(), cases=cases)


@router.get(UI_PREFIX + "/groups", response_class=HTMLResponse)
def groups_index() -> RedirectResponse:
    """The groups are listed on the home page."""
    return RedirectResponse("/#algorithm", status_code=303)


@router.get(UI_PREFIX + "/groups/{gid}", response_class=HTMLResponse)
def group_page(request: Request, gid: str, pages: PagesDep) -> HTMLResponse:
    """One patient group: its pathways and steps, with the other groups of its site."""
    g = pages.kb.groups.get(gid)
    if g is None:
        return pages.not_found(request, f"There is no patient group '{gid}'.")
    siblings = [x for x in pages.kb.data.groups if x.site == g.site]
    return pages.render(request, "group.html", g=g, siblings=siblings, sites=pages.by_site())


@router.get("/search", response_class=HTMLResponse)
def search_page(request: Request, pages: PagesDep, q: str = "") -> HTMLResponse:
    """Drugs, treatment steps and groups matching every word of ``q``."""
    q = q.strip()[:200]
    hits = search(pages.kb, q) if q else []
    return pages.render(request, "search.html", q=q, hits=hits)

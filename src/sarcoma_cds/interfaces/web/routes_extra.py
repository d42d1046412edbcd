"""Web routes added after the first release (issue 14), kept apart from ``routes.py``.

``routes.py::build_router`` holds the original pages; routes here are added by ``mount`` with
their own router, so that the two files change independently. Today: ``/favicon.ico`` (browsers
ask for it on every first load; a 404 there is a console error), an HTML answer for a page
whose record does not exist (instead of the API's JSON problem), and the tumour-board mode:
``/board`` lists the day's saved cases with their one-line bottom line, ``/board/{n}`` opens the
n-th one's board sheet with previous / next, and the decision recorded there returns to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

FAVICON = Path(__file__).parent / "static" / "favicon.svg"


class PageNotFound(Exception):
    """A page's record (a saved case) does not exist: answered with the HTML error page."""

    status = 404
    title = "Not found"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CaseUnreadable(PageNotFound):
    """A saved case whose stored facts or recommendation this server cannot decrypt (its data key
    is not among ``SARCOMA_CDS_DATA_KEYS``): said plainly, never shown as an empty record
    (hazard H-19)."""

    status = 503
    title = "Record cannot be read"

    def __init__(self, fields: list[str]) -> None:
        names = {"raw_facts": "facts", "recommendation": "recommendation", "label": "label"}
        parts = ", ".join(names.get(f, f) for f in fields)
        super().__init__(
            f"Part of this record ({parts}) is encrypted with a data key this server does not "
            "have, so it is not shown: an empty or partial record would look complete. Ask the "
            "administrator to configure the key that wrote it (SARCOMA_CDS_DATA_KEYS).")


def _day(iso: str) -> str:
    return (iso or "")[:10]


def build_extra_router(backend: Any) -> APIRouter:
    from markupsafe import Markup

    from sarcoma_cds.interfaces.api.deps import web_viewer
    from sarcoma_cds.interfaces.web import diagram
    from sarcoma_cds.interfaces.web.forms import facts_query
    from sarcoma_cds.interfaces.web.pages import choices as _choices
    from sarcoma_cds.interfaces.web.pages import make_templates
    from sarcoma_cds.interfaces.web.present import bottom_line

    router = APIRouter(include_in_schema=False)
    viewer = [Depends(web_viewer)]  # pages with saved cases: the viewer role (issue 12)
    templates = make_templates(backend)
    kb = backend.kb

    def session_cases(day: str) -> list[dict[str, Any]]:
        """The day's saved cases, in the order they were saved (``all``: the 100 most recent)."""
        rows = list(reversed(backend.list_cases(100)))
        return (
            rows
            if day == "all"
            else [r for r in rows if _day(str(r.get("created_at") or "")) == day]
        )

    def today() -> str:
        from datetime import UTC, datetime

        return datetime.now(UTC).date().isoformat()

    @router.get("/board", response_class=HTMLResponse, dependencies=viewer)
    def board_list(request: Request, day: str = "") -> HTMLResponse:
        day = day if day == "all" or (len(day) == 10 and day[4] == "-") else today()
        items = []
        for n, row in enumerate(session_cases(day), start=1):
            case = backend.get_case(str(row["id"]))
            if case is None or not case.recommendation:
                continue
            bl = bottom_line(case.recommendation, case.facts,
                             lambda g: kb.groups[g].label if g in kb.groups else g)
            items.append({"n": n, "case": case, "line": bl.sentence,
                          "decision": case.decisions[-1].outcome_label if case.decisions else ""})
        return templates.TemplateResponse(request, "board_list.html", {"items": items, "day": day,
                                                                       "is_today": day == today()})

    @router.get("/compare", response_class=HTMLResponse, dependencies=viewer)
    def compare(request: Request) -> HTMLResponse:
        """Two or three saved cases side by side: the facts that differ, then each bottom line."""
        ids = list(dict.fromkeys(request.query_params.getlist("id")))[:3]
        cases = [
            c for c in (backend.get_case(i) for i in ids) if c is not None and c.recommendation
        ]
        names = sorted({k for c in cases for k in c.facts})
        differ = [n for n in names if len({repr(c.facts.get(n)) for c in cases}) > 1]
        return templates.TemplateResponse(
            request,
            "compare.html",
            {"cases": cases, "differ": differ},
            status_code=200 if len(cases) >= 2 else 422,
        )

    @router.get("/board/{n}", response_class=HTMLResponse, dependencies=viewer)
    def board_session(request: Request, n: int, day: str = "") -> HTMLResponse:
        day = day or today()
        rows = session_cases(day)
        if not 1 <= n <= len(rows):
            raise PageNotFound(f"There is no case {n} on the tumour-board list of {day}.")
        case = backend.get_case(str(rows[n - 1]["id"]))
        if case is None or not case.recommendation:
            raise PageNotFound("That saved case has no recommendation.")
        q = "" if day == today() else f"?day={day}"
        rec = case.recommendation
        ctx = {
            "rec": rec,
            "audit_id": case.id,
            "facts": case.facts,
            "facts_qs": facts_query(case.facts),
            "diagram": Markup(diagram.render(rec, case.facts, kb)),
            "case": case,
            "choices": _choices(rec),
            "session": {
                "n": n,
                "total": len(rows),
                "url": f"/board/{n}{q}",
                "prev": f"/board/{n - 1}{q}" if n > 1 else "",
                "next": f"/board/{n + 1}{q}" if n < len(rows) else "",
                "list": f"/board{q}",
            },
        }
        return templates.TemplateResponse(request, "board.html", ctx)

    @router.get("/favicon.ico")
    def favicon() -> Response:
        # SVG under the .ico name: Chromium and Firefox accept it by its media type
        return Response(FAVICON.read_bytes(), media_type="image/svg+xml",
                        headers={"Cache-Control": "public, max-age=86400"})

    return router


def not_found_handler(templates: Jinja2Templates) -> Any:
    """Exception handler rendering ``error.html`` with 404 for :class:`PageNotFound`."""

    async def handle(request: Request, exc: Exception) -> HTMLResponse:
        if isinstance(exc, PageNotFound):
            msg, title, status = exc.message, exc.title, exc.status
        else:
            msg, title, status = "Not found.", "Not found", 404
        return templates.TemplateResponse(
            request, "error.html", {"title": title, "message": msg}, status_code=status
        )

    return handle

"""Saved cases: saving, the list, the case page, the tumour-board view, the clinician's
decision and the plain-language patient summary."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from sarcoma_cds.interfaces.api.deps import Clinician, Viewer
from sarcoma_cds.interfaces.api.identity.principal import Principal
from sarcoma_cds.interfaces.web import plain
from sarcoma_cds.interfaces.web.adapter import OUTCOMES, CaseView
from sarcoma_cds.interfaces.web.forms import facts_from_form, validate
from sarcoma_cds.interfaces.web.pages import Pages, PagesDep, SavedCase, choices

router = APIRouter(include_in_schema=False)


@router.post("/cases", response_class=HTMLResponse)
async def save_case(request: Request, who: Clinician, pages: PagesDep) -> Response:
    """Save the facts as a case (an explicit action: their record keeps the facts)."""
    form = await request.form()

    def save() -> Response:  # the engine, the page and the commit: off the event loop
        facts = facts_from_form(form, pages.fields)
        if validate(facts):
            return pages.answer(request, facts, "patient.html")
        label = str(form.get("case_label") or "").strip()[:120]
        _, cid = pages.backend.save_case(facts, caller=who.author, label=label)
        return RedirectResponse(f"/cases/{quote(cid)}", status_code=303)

    return await run_in_threadpool(save)


@router.get("/cases", response_class=HTMLResponse)
def cases_page(request: Request, who: Viewer, pages: PagesDep) -> HTMLResponse:
    """The saved cases, newest first."""
    return pages.render(request, "cases.html", cases=pages.backend.list_cases(100))


@router.get("/cases/{cid}", response_class=HTMLResponse)
def case_page(request: Request, who: Viewer, case: SavedCase, pages: PagesDep) -> HTMLResponse:
    """One case: recommendation, facts, diagram, decision form, downloads."""
    return pages.render(request, "case.html", **pages.case_context(case),
                        has_fhir=pages.backend.has_fhir)


def _decision_errors(outcome: str, chosen: str, rationale: str) -> dict[str, str]:
    errors: dict[str, str] = {}
    if outcome not in OUTCOMES:
        errors["outcome"] = "Choose what was decided."
    if outcome == "overridden" and not chosen:
        errors["chosen"] = "Name the option that was chosen instead."
    if outcome == "overridden" and not rationale:
        errors["rationale"] = "Give the reason for choosing another option."
    return errors


@router.post("/cases/{cid}/decision")
async def decision(request: Request, who: Clinician, case: SavedCase, pages: PagesDep) -> Response:
    """Record the clinician's or board's decision, then back to the case or board. Its
    author is the signed-in user (the local user in the embedded default), never a typed
    name (issue 12)."""
    form = await request.form()
    return await run_in_threadpool(_decide, request, who, case, pages, form)


def _decide(request: Request, who: Principal, case: CaseView, pages: Pages,
            form: FormData) -> Response:
    """The decision form's checks, then its record (a commit): in the threadpool."""
    outcome = str(form.get("outcome") or "")
    chosen = str(form.get("chosen") or "").strip()[:300]
    rationale = str(form.get("rationale") or "").strip()[:4000]
    back = "board" if form.get("next") == "board" else ""
    session = str(form.get("next") or "")  # tumour-board mode returns to its sheet (issue 14)
    session = session if session[:7] == "/board/" and session[7:].split("?")[0].isdigit() else ""
    back = back or ("board" if session else "")
    errors = _decision_errors(outcome, chosen, rationale)
    if chosen and chosen not in dict(choices(case.recommendation)):  # it must belong to the case
        errors["chosen"] = "Choose one of this case's options from the list."
    if errors:
        tpl = "board.html" if back else "case.html"
        return pages.render(request, tpl, 422, **pages.case_context(case),
                            has_fhir=pages.backend.has_fhir, decision_errors=errors,
                            decision_values=dict(form))
    pages.backend.record_decision(case.id, outcome, chosen, rationale, who.author)
    target = f"/cases/{quote(case.id)}/board" if back else f"/cases/{quote(case.id)}#decision"
    return RedirectResponse(session or target, status_code=303)


@router.get("/cases/{cid}/board", response_class=HTMLResponse)
def board(request: Request, who: Viewer, case: SavedCase, pages: PagesDep) -> HTMLResponse:
    """The tumour-board sheet (print stylesheet) with its decision form."""
    return pages.render(request, "board.html", **pages.case_context(case))


@router.get("/cases/{cid}/patient-summary", response_class=HTMLResponse)
def patient_summary(request: Request, who: Viewer, case: SavedCase,
                    pages: PagesDep) -> HTMLResponse:
    """The plain-language discussion aid for the patient."""
    rec = case.recommendation
    return pages.render(request, "patient_summary.html", case=case, rec=rec,
                        tumour=plain.tumour_sentence(case.facts) if case.facts else "",
                        situation=plain.situation_sentence(rec, case.facts), ways=plain.ways(rec))

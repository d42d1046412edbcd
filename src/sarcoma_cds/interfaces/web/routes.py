"""Routes of the web application (server-rendered Jinja2 pages)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from sarcoma_cds import FACT_FIELDS, InvalidFacts
from sarcoma_cds.interfaces import json_input
from sarcoma_cds.interfaces.web import diagram, plain
from sarcoma_cds.interfaces.web.adapter import OUTCOMES, CaseView, WebBackend, short_time
from sarcoma_cds.interfaces.web.forms import (
    SECTIONS,
    build_fields,
    facts_from_form,
    facts_query,
    form_values,
    validate,
)
from sarcoma_cds.interfaces.web.pdf import PdfUnavailable, html_to_pdf
from sarcoma_cds.interfaces.web.present import (
    RISK_SCHEME,
    SITE_LABEL,
    SITE_SHORT,
    STATUS_ICON,
    STATUS_LABEL,
    TIER_LABEL,
    _consistent,
    bottom_line,
    ordered_options,
    pathway_index,
    regimen,
    risk_label,
    search,
    step_anchor,
    step_reasons,
    what_if,
)
from sarcoma_cds.interfaces.web.routes_extra import PageNotFound

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
MAX_UPLOAD = 1024 * 1024

#: Internal prefix of pages whose public path the REST API also serves (``/groups``):
#: requests that accept HTML are rewritten to it by the middleware in ``mount``.
UI_PREFIX = "/ui"


def _unit(u: str | None) -> str:
    return (u or "").replace("mm2", "mm²")


def make_templates(backend: WebBackend) -> Jinja2Templates:
    t = Jinja2Templates(directory=str(TEMPLATES))
    kb = backend.kb
    env = t.env
    env.filters.update(
        status_label=lambda s: STATUS_LABEL.get(s, s),
        status_icon=lambda s: STATUS_ICON.get(s, ""),
        tier_label=lambda s: TIER_LABEL.get(s, s),
        regimen=regimen,
        risk=risk_label,
        unit=_unit,
        short_time=short_time,
        cap=lambda s: (s[:1].upper() + s[1:]) if s else s,
    )
    env.globals.update(
        kb=kb,
        SITE_LABEL=SITE_LABEL,
        SITE_SHORT=SITE_SHORT,
        RISK_SCHEME=RISK_SCHEME,
        OUTCOMES=OUTCOMES,
        step_anchor=step_anchor,
        pathway_index=pathway_index,
        fact_label=lambda f: (kb.label(f)[:1].upper() + kb.label(f)[1:]),
        value_label=lambda f, v: kb.value_label(f, tuple(v) if isinstance(v, list) else v),
        group_label=lambda gid: kb.groups[gid].label if gid in kb.groups else gid,
        disclaimer=backend.disclaimer,
        kb_version=kb.version,
        kb_hash=kb.content_hash,
        fallbacks=backend.fallbacks,
        FACT_FIELDS=FACT_FIELDS,
        chosen_label=chosen_label,
        facts_qs_values=lambda facts, name, value: form_values(_consistent(facts, name, value)),
        bottom_line=lambda rec, facts=None: bottom_line(  # issue 14: the summary atop each result
            rec, facts, lambda g: kb.groups[g].label if g in kb.groups else g),
        step_reasons=step_reasons,
        ordered_options=ordered_options,
    )
    return t


def build_router(backend: WebBackend) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    templates = make_templates(backend)
    kb = backend.kb
    fields = build_fields(kb)

    def page(request: Request, name: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, name, ctx, status_code=status_code)

    def not_found(request: Request, what: str) -> HTMLResponse:
        return page(request, "error.html", 404, title="Not found", message=what)

    def by_site() -> list[tuple[str, list[Any]]]:
        out: dict[str, list[Any]] = {}
        for g in kb.data.groups:
            out.setdefault(g.site, []).append(g)
        return list(out.items())

    def result_context(facts: dict[str, Any], rec: Any, audit_id: str | None) -> dict[str, Any]:
        d = rec.model_dump(mode="json") if hasattr(rec, "model_dump") else rec
        return {
            "rec": d,
            "audit_id": audit_id,
            "facts": facts,
            "facts_qs": facts_query(facts),
            "diagram": Markup(diagram.render(d, facts, kb)),
        }

    # ------------------------------------------------------------------ algorithm
    @router.get("/", response_class=HTMLResponse)
    def home(request: Request) -> HTMLResponse:
        return page(request, "home.html", sites=by_site(), cases=backend.list_cases(8))

    @router.get(UI_PREFIX + "/groups", response_class=HTMLResponse)
    def groups_index() -> RedirectResponse:
        return RedirectResponse("/#algorithm", status_code=303)

    @router.get(UI_PREFIX + "/groups/{gid}", response_class=HTMLResponse)
    def group_page(request: Request, gid: str) -> HTMLResponse:
        g = kb.groups.get(gid)
        if g is None:
            return not_found(request, f"There is no patient group '{gid}'.")
        siblings = [x for x in kb.data.groups if x.site == g.site]
        return page(request, "group.html", g=g, siblings=siblings, sites=by_site())

    @router.get("/search", response_class=HTMLResponse)
    def search_page(request: Request, q: str = "") -> HTMLResponse:
        q = q.strip()[:200]
        hits = search(kb, q) if q else []
        return page(request, "search.html", q=q, hits=hits)

    # ------------------------------------------------------------------ patient
    @router.get("/patient", response_class=HTMLResponse)
    def patient_form(request: Request) -> HTMLResponse:
        values = {k: request.query_params.getlist(k) for k in fields if k in request.query_params}
        return page(request, "patient.html", sections=SECTIONS, fields=fields, values=values,
                    errors={}, rec=None)

    @router.post("/patient", response_class=HTMLResponse)
    async def patient_submit(request: Request) -> HTMLResponse:
        form = await request.form()
        facts = facts_from_form(form, fields)
        return _answer(request, facts, "patient.html")

    def _answer(request: Request, facts: dict[str, Any], template: str, **extra: Any) -> HTMLResponse:
        errors = validate(facts)
        values = form_values(facts)
        if errors:
            return page(request, template, 422, sections=SECTIONS, fields=fields, values=values,
                        errors=errors, rec=None, **extra)
        try:
            rec, audit_id = backend.recommend_and_record(facts, caller="web")
        except InvalidFacts as e:  # validated above; defensive
            errs: dict[str, list[str]] = {}
            for f, m in e.problems:
                errs.setdefault(f.split(".")[0], []).append(m)
            return page(request, template, 422, sections=SECTIONS, fields=fields, values=values,
                        errors=errs, rec=None, **extra)
        return page(request, template, sections=SECTIONS, fields=fields, values=values, errors={},
                    **result_context(facts, rec, audit_id), **extra)

    @router.api_route("/patient/what-if", methods=["GET", "POST"], response_class=HTMLResponse)
    async def what_if_page(request: Request) -> HTMLResponse:
        src: Any = await request.form() if request.method == "POST" else request.query_params
        facts = facts_from_form(src, fields)
        errors = validate(facts)
        if errors:
            return page(request, "patient.html", 422, sections=SECTIONS, fields=fields,
                        values=form_values(facts), errors=errors, rec=None)
        base, items = what_if(kb, backend.recommend, facts, fields)
        return page(request, "whatif.html", rec=base.model_dump(mode="json"), facts=facts,
                    items=items, facts_qs=facts_query(facts))

    # ------------------------------------------------------------------ cases
    @router.post("/cases", response_class=HTMLResponse)
    async def save_case(request: Request) -> Response:
        form = await request.form()
        facts = facts_from_form(form, fields)
        if validate(facts):
            return _answer(request, facts, "patient.html")
        label = str(form.get("case_label") or "").strip()[:120]
        _, cid = backend.save_case(facts, caller="web", label=label)
        return RedirectResponse(f"/cases/{quote(cid)}", status_code=303)

    @router.get("/cases", response_class=HTMLResponse)
    def cases_page(request: Request) -> HTMLResponse:
        return page(request, "cases.html", cases=backend.list_cases(100))

    def load(cid: str) -> CaseView:
        case = backend.get_case(cid)
        if case is None or not case.recommendation:
            raise PageNotFound(f"There is no saved case '{cid}'.")  # issue 14: HTML, not JSON
        return case

    def case_ctx(case: CaseView) -> dict[str, Any]:
        ctx = result_context(case.facts, case.recommendation, case.id)
        ctx["case"] = case
        ctx["choices"] = _choices(case.recommendation)
        return ctx

    @router.get("/cases/{cid}", response_class=HTMLResponse)
    def case_page(request: Request, cid: str) -> HTMLResponse:
        case = load(cid)
        return page(request, "case.html", **case_ctx(case), has_fhir=backend.has_fhir)

    @router.post("/cases/{cid}/decision")
    async def decision(request: Request, cid: str) -> Response:
        case = load(cid)
        form = await request.form()
        outcome = str(form.get("outcome") or "")
        chosen = str(form.get("chosen") or "").strip()[:300]
        rationale = str(form.get("rationale") or "").strip()[:4000]
        clinician = str(form.get("clinician") or "").strip()[:120]
        back = "board" if form.get("next") == "board" else ""
        session = str(form.get("next") or "")  # issue 14: tumour-board mode returns to its sheet
        session = session if session[:7] == "/board/" and session[7:].split("?")[0].isdigit() else ""
        back = back or ("board" if session else "")
        errors: dict[str, str] = {}
        if outcome not in OUTCOMES:
            errors["outcome"] = "Choose what was decided."
        if outcome == "overridden" and not chosen:
            errors["chosen"] = "Name the option that was chosen instead."
        if chosen and chosen not in dict(_choices(case.recommendation)):  # issue 14: must belong to the case
            errors["chosen"] = "Choose one of this case's options from the list."
        if outcome == "overridden" and not rationale:
            errors["rationale"] = "Give the reason for choosing another option."
        if errors:
            tpl = "board.html" if back else "case.html"
            return page(request, tpl, 422, **case_ctx(case), has_fhir=backend.has_fhir,
                        decision_errors=errors, decision_values=dict(form))
        backend.record_decision(case.id, outcome, chosen, rationale, clinician)
        target = f"/cases/{quote(case.id)}/board" if back else f"/cases/{quote(case.id)}#decision"
        target = session or target
        return RedirectResponse(target, status_code=303)

    @router.get("/cases/{cid}/board", response_class=HTMLResponse)
    def board(request: Request, cid: str) -> HTMLResponse:
        case = load(cid)
        return page(request, "board.html", **case_ctx(case))

    @router.get("/cases/{cid}/board.pdf")
    def board_pdf(request: Request, cid: str) -> Response:
        case = load(cid)
        html = templates.get_template("board.html").render(
            request=request, pdf=True, **case_ctx(case), **templates.env.globals)
        try:
            data = html_to_pdf(html, STATIC, [STATIC / "web.css"])
        except PdfUnavailable as e:
            return page(request, "error.html", 503, title="PDF not available",
                        message=f"{e}. Use the print view instead: it prints to PDF from the browser.")
        return Response(data, media_type="application/pdf", headers={
            "Content-Disposition": f'attachment; filename="tumour-board-{case.id[:12]}.pdf"'})

    @router.get("/cases/{cid}/patient-summary", response_class=HTMLResponse)
    def patient_summary(request: Request, cid: str) -> HTMLResponse:
        case = load(cid)
        rec = case.recommendation
        return page(request, "patient_summary.html", case=case, rec=rec,
                    tumour=plain.tumour_sentence(case.facts) if case.facts else "",
                    situation=plain.situation_sentence(rec, case.facts), ways=plain.ways(rec))  # issue 14

    @router.get("/cases/{cid}/diagram.svg")
    def diagram_svg(cid: str) -> Response:
        case = load(cid)
        svg = diagram.render(case.recommendation, case.facts, kb)
        return Response('<?xml version="1.0" encoding="UTF-8"?>\n' + svg, media_type="image/svg+xml")

    @router.get("/cases/{cid}/recommendation.json")
    def export_json(cid: str) -> JSONResponse:
        case = load(cid)
        return JSONResponse(case.recommendation, headers={
            "Content-Disposition": f'attachment; filename="recommendation-{case.id[:12]}.json"'})

    @router.get("/cases/{cid}/facts.json")
    def export_facts(cid: str) -> JSONResponse:
        case = load(cid)
        if not case.facts:
            raise HTTPException(404, "The facts of this record were not kept (it was not saved as a case).")
        return JSONResponse(case.facts, headers={
            "Content-Disposition": f'attachment; filename="patient-facts-{case.id[:12]}.json"'})

    @router.get("/cases/{cid}/recommendation.fhir.json")
    def export_fhir(request: Request, cid: str) -> Response:
        case = load(cid)
        try:
            bundle = backend.recommendation_to_fhir(case.recommendation, case.facts, case.id)
        except NotImplementedError as e:
            return page(request, "error.html", 501, title="FHIR export not available", message=str(e))
        return JSONResponse(bundle, media_type="application/fhir+json", headers={
            "Content-Disposition": f'attachment; filename="recommendation-{case.id[:12]}.fhir.json"'})

    # ------------------------------------------------------------------ import
    @router.get("/import", response_class=HTMLResponse)
    def import_form(request: Request) -> HTMLResponse:
        return page(request, "import.html", error="", has_fhir=backend.has_fhir)

    @router.post("/import", response_class=HTMLResponse)
    async def import_file(request: Request) -> HTMLResponse:
        form = await request.form()
        upload = form.get("file")
        text = str(form.get("text") or "")
        raw: bytes = b""
        if upload is not None and hasattr(upload, "read"):
            raw = await upload.read(MAX_UPLOAD + 1)
        await form.close()  # (the upload's temporary file; else it is left to the garbage collector)
        if not raw and text.strip():
            raw = text.encode()

        def fail(msg: str) -> HTMLResponse:
            return page(request, "import.html", 422, error=msg, has_fhir=backend.has_fhir)

        if not raw:
            return fail("Choose a file (patient facts JSON or a FHIR Bundle) or paste its content.")
        if len(raw) > MAX_UPLOAD:
            return fail("The file is larger than 1 MB.")
        try:
            data = json_input.loads(raw)
        except json_input.DuplicateKeyError as e:
            return fail(f"The field {e.key!r} is given more than once; which value is meant is ambiguous.")
        except ValueError as e:  # (not UTF-8, or not JSON)
            return fail(f"The file is not valid JSON ({e.__class__.__name__}: {e}).")
        provenance: dict[str, Any] = {}
        gaps: list[Any] = []
        source = "patient facts (JSON)"
        if isinstance(data, dict) and data.get("resourceType") == "Bundle":
            try:
                ans = backend.answer_bundle(data, caller="web")
            except NotImplementedError as e:
                return fail(str(e))
            except Exception as e:  # a mapper failure must not become a stack trace
                return fail(f"The FHIR bundle could not be read ({e.__class__.__name__}).")
            imported = {"source": "FHIR / mCODE bundle", "provenance": ans.provenance, "gaps": ans.gaps}
            if ans.recommendation is None:  # invalid facts: the form shows what is missing
                return _answer(request, ans.facts, "patient.html", imported=imported)
            return page(request, "patient.html", sections=SECTIONS, fields=fields, values=form_values(ans.facts),
                        errors={}, **result_context(ans.facts, ans.recommendation, ans.audit_id),
                        imported=imported)
        elif isinstance(data, dict) and isinstance(data.get("facts"), dict):
            facts = data["facts"]
        elif isinstance(data, dict):
            facts = data
        else:
            return fail("Expected a JSON object: patient facts, {\"facts\": {...}} or a FHIR Bundle.")
        unknown = sorted(k for k in facts if k not in fields)
        if unknown:
            return fail("Unknown fields (not in the contract; check the spelling): " + ", ".join(unknown))
        return _answer(request, facts, "patient.html",
                       imported={"source": source, "provenance": provenance, "gaps": gaps})

    return router


def chosen_label(rec: dict[str, Any], key: str) -> str:
    """Human label of a recorded choice (``treatment`` or ``treatment:drug+drug``)."""
    treatment, _, drugs = key.partition(":")
    label = treatment.replace("_", " ")
    for p in rec.get("pathways") or []:
        for s in p.get("steps") or []:
            if s["treatment"] == treatment:
                label = s["label"]
    return f"{label} — {regimen(drugs.split('+'))}" if drugs else label


def _choices(rec: dict[str, Any]) -> list[tuple[str, str]]:
    """Options a board can record as chosen: each step, and each regimen within it."""
    out: list[tuple[str, str]] = []
    for pi, p in enumerate(rec.get("pathways") or [], start=1):
        for s in p.get("steps") or []:
            tag = f" ({STATUS_LABEL.get(s['status'], s['status']).lower()})"
            out.append((s["treatment"], f"Pathway {pi} · {TIER_LABEL[s['tier']]}: {s['label']}{tag}"))
            for o in s.get("options") or []:
                key = s["treatment"] + ":" + "+".join(o["drugs"])
                out.append((key, f"    {s['label']}: {regimen(o['drugs'])} "
                                 f"({STATUS_LABEL.get(o['status'], o['status']).lower()})"))
    return list(dict(out).items())

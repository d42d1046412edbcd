"""What every page router shares: the templates, the form fields and the page helpers.

``mount`` builds one :class:`Pages` per app (the templates carry that app's knowledge base
and backend as globals) and puts it on ``app.state``; the routers (``routes_browse``,
``routes_patient``, ``routes_cases``, ``routes_exports``) receive it with the
:data:`PagesDep` dependency, and a saved case with :data:`SavedCase`, instead of being
closures over a factory's locals (ADR 0105).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from markupsafe import Markup

from sarcoma_cds import FACT_FIELDS, InvalidFacts, Recommendation
from sarcoma_cds.domain.kb_models import Group
from sarcoma_cds.interfaces.web import diagram
from sarcoma_cds.interfaces.web.adapter import OUTCOMES, CaseView, WebBackend, short_time
from sarcoma_cds.interfaces.web.forms import (
    SECTIONS,
    build_fields,
    facts_query,
    form_values,
    validate,
)
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
    step_anchor,
    step_reasons,
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


@pass_context
def csrf_field(ctx: Any) -> Markup:
    """The hidden CSRF field of a state-changing form (``{{ csrf_field() }}``); the token is set
    on the request by the service's hardening middleware (empty without it)."""
    request = ctx.get("request")
    token = getattr(getattr(request, "state", None), "csrf_token", "") if request else ""
    return Markup('<input type="hidden" name="csrf_token" value="{}">').format(token)


def make_templates(backend: WebBackend) -> Jinja2Templates:
    """The Jinja2 environment with the filters and globals every template uses."""
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
        bottom_line=lambda rec, facts=None: bottom_line(  # the summary atop each result (issue 14)
            rec, facts, lambda g: kb.groups[g].label if g in kb.groups else g),
        step_reasons=step_reasons,
        ordered_options=ordered_options,
        csrf_field=csrf_field,
        signed_in=_signed_in,  # the header's "signed in as" and sign-out (issue 12)
    )
    return t


def _signed_in(request: Request) -> dict[str, Any]:
    """Who is using the page, for the header and the decision form: ``user`` (a Principal or
    None), ``signin`` (sign-in is configured) and ``can_sign_out`` (a session to end)."""
    from sarcoma_cds.interfaces.api.identity.state import get_identity

    ident = get_identity(request)
    user = ident.web_principal(request)
    return {"user": user, "signin": ident.signin,
            "can_sign_out": user is not None and user.kind in ("oidc", "smart")}


class Pages:
    """The web app's backend, templates and form fields, and the helpers pages share."""

    def __init__(self, backend: WebBackend) -> None:
        self.backend = backend
        self.templates = make_templates(backend)
        self.kb = backend.kb
        self.fields = build_fields(self.kb)

    def render(self, request: Request, name: str, status_code: int = 200,
               **ctx: Any) -> HTMLResponse:
        """The template ``name`` rendered with ``ctx``."""
        return self.templates.TemplateResponse(request, name, ctx, status_code=status_code)

    def not_found(self, request: Request, what: str) -> HTMLResponse:
        """The 404 page saying what was not found."""
        return self.render(request, "error.html", 404, title="Not found", message=what)

    def by_site(self) -> list[tuple[str, list[Group]]]:
        """The patient groups by primary site, in knowledge-base order."""
        out: dict[str, list[Group]] = {}
        for g in self.kb.data.groups:
            out.setdefault(g.site, []).append(g)
        return list(out.items())

    def result_context(self, facts: dict[str, Any], rec: Recommendation | dict[str, Any],
                       audit_id: str | None) -> dict[str, Any]:
        """What a page showing a recommendation needs (the result panel, the pathway diagram)."""
        d = rec.model_dump(mode="json") if isinstance(rec, Recommendation) else rec
        return {
            "rec": d,
            "audit_id": audit_id,
            "facts": facts,
            "facts_qs": facts_query(facts),
            "diagram": Markup(diagram.render(d, facts, self.kb)),
        }

    def form_page(self, request: Request, template: str, status_code: int, facts: dict[str, Any],
                  errors: dict[str, list[str]], **extra: Any) -> HTMLResponse:
        """The patient form again, with the facts entered and what is wrong with them."""
        return self.render(request, template, status_code, sections=SECTIONS, fields=self.fields,
                           values=form_values(facts), errors=errors, rec=None, **extra)

    def answer(self, request: Request, facts: dict[str, Any], template: str,
               **extra: Any) -> HTMLResponse:
        """Validate, recommend (audited) and show the result below the form; 422 with the
        form and its errors when the facts are invalid."""
        errors = validate(facts)
        if errors:
            return self.form_page(request, template, 422, facts, errors, **extra)
        try:
            rec, audit_id = self.backend.recommend_and_record(facts, caller="web")
        except InvalidFacts as e:  # validated above; defensive
            errs: dict[str, list[str]] = {}
            for f, m in e.problems:
                errs.setdefault(f.split(".")[0], []).append(m)
            return self.form_page(request, template, 422, facts, errs, **extra)
        return self.render(request, template, sections=SECTIONS, fields=self.fields,
                           values=form_values(facts), errors={},
                           **self.result_context(facts, rec, audit_id), **extra)

    def case_context(self, case: CaseView) -> dict[str, Any]:
        """What the case and board pages need."""
        ctx = self.result_context(case.facts, case.recommendation, case.id)
        ctx["case"] = case
        ctx["choices"] = choices(case.recommendation)
        return ctx


def get_pages(request: Request) -> Pages:
    """The pages of the app serving this request (set by ``mount``)."""
    pages: Pages = request.app.state.web_pages
    return pages


PagesDep = Annotated[Pages, Depends(get_pages)]


def saved_case(cid: str, pages: PagesDep) -> CaseView:
    """The case ``cid`` with its recommendation (404 when there is none)."""
    case = pages.backend.get_case(cid)
    if case is None or not case.recommendation:
        raise PageNotFound(f"There is no saved case '{cid}'.")  # an HTML page, not JSON (issue 14)
    return case


SavedCase = Annotated[CaseView, Depends(saved_case)]


def chosen_label(rec: dict[str, Any], key: str) -> str:
    """Human label of a recorded choice (``treatment`` or ``treatment:drug+drug``)."""
    treatment, _, drugs = key.partition(":")
    label = treatment.replace("_", " ")
    for p in rec.get("pathways") or []:
        for s in p.get("steps") or []:
            if s["treatment"] == treatment:
                label = s["label"]
    return f"{label} — {regimen(drugs.split('+'))}" if drugs else label


def choices(rec: dict[str, Any]) -> list[tuple[str, str]]:
    """Options a board can record as chosen: each step, and each regimen within it."""
    out: list[tuple[str, str]] = []
    for pi, p in enumerate(rec.get("pathways") or [], start=1):
        for s in p.get("steps") or []:
            tag = f" ({STATUS_LABEL.get(s['status'], s['status']).lower()})"
            tier = TIER_LABEL[s["tier"]]
            out.append((s["treatment"], f"Pathway {pi} · {tier}: {s['label']}{tag}"))
            for o in s.get("options") or []:
                key = s["treatment"] + ":" + "+".join(o["drugs"])
                out.append((key, f"    {s['label']}: {regimen(o['drugs'])} "
                                 f"({STATUS_LABEL.get(o['status'], o['status']).lower()})"))
    return list(dict(out).items())

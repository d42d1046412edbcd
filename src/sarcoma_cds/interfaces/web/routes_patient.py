"""The patient pages: the facts form and its result, what-if, and importing a facts file or a
FHIR Bundle (answered with the same result page)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from sarcoma_cds.interfaces import json_input
from sarcoma_cds.interfaces.api.deps import Viewer
from sarcoma_cds.interfaces.web.forms import (
    SECTIONS,
    facts_from_form,
    facts_query,
    form_values,
    validate,
)
from sarcoma_cds.interfaces.web.pages import MAX_UPLOAD, Pages, PagesDep
from sarcoma_cds.interfaces.web.present import what_if

router = APIRouter(include_in_schema=False)


@router.get("/patient", response_class=HTMLResponse)
def patient_form(request: Request, who: Viewer, pages: PagesDep) -> HTMLResponse:
    """The empty form, or prefilled from the query parameters."""
    values = {k: request.query_params.getlist(k) for k in pages.fields if k in request.query_params}
    return pages.render(request, "patient.html", sections=SECTIONS, fields=pages.fields,
                        values=values, errors={}, rec=None)


@router.post("/patient", response_class=HTMLResponse)
async def patient_submit(request: Request, who: Viewer, pages: PagesDep) -> HTMLResponse:
    """The recommendation for the submitted facts, above the form."""
    form = await request.form()

    def answer() -> HTMLResponse:  # the engine, the page and the audit commit: off the loop
        return pages.answer(request, facts_from_form(form, pages.fields), "patient.html")

    return await run_in_threadpool(answer)


@router.api_route("/patient/what-if", methods=["GET", "POST"], response_class=HTMLResponse)
async def what_if_page(request: Request, who: Viewer, pages: PagesDep) -> HTMLResponse:
    """Each missing or decisive fact recomputed under each of its values."""
    src: Any = await request.form() if request.method == "POST" else request.query_params
    return await run_in_threadpool(_what_if, request, pages, src)


def _what_if(request: Request, pages: Pages, src: Any) -> HTMLResponse:
    """The what-if page (each recomputation in the engine): in the threadpool."""
    facts = facts_from_form(src, pages.fields)
    errors = validate(facts)
    if errors:
        return pages.form_page(request, "patient.html", 422, facts, errors)
    base, items = what_if(pages.kb, pages.backend.recommend, facts, pages.fields)
    return pages.render(request, "whatif.html", rec=base.model_dump(mode="json"), facts=facts,
                        items=items, facts_qs=facts_query(facts))


@router.get("/import", response_class=HTMLResponse)
def import_form(request: Request, who: Viewer, pages: PagesDep) -> HTMLResponse:
    """Upload or paste facts or a FHIR Bundle."""
    return pages.render(request, "import.html", error="", has_fhir=pages.backend.has_fhir)


class _ImportRefused(Exception):
    """The uploaded file cannot be used; ``str(e)`` says why, on the import page."""


async def _uploaded(request: Request) -> bytes:
    """The uploaded file's bytes (at most one more than the limit), else the pasted text."""
    form = await request.form()
    upload = form.get("file")
    text = str(form.get("text") or "")
    raw: bytes = b""
    if isinstance(upload, UploadFile):
        raw = await upload.read(MAX_UPLOAD + 1)
    await form.close()  # (the upload's temporary file; else it is left to the garbage collector)
    if not raw and text.strip():
        raw = text.encode()
    return raw


def _imported_facts(pages: Pages, raw: bytes) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """Facts from an uploaded facts file, ``{"facts": ...}`` or FHIR Bundle, what the result
    page says about where they came from, and (for a Bundle) the service's answer to it."""
    if not raw:
        raise _ImportRefused("Choose a file (patient facts JSON or a FHIR Bundle) "
                             "or paste its content.")
    if len(raw) > MAX_UPLOAD:
        raise _ImportRefused("The file is larger than 1 MB.")
    try:
        data = json_input.loads(raw)
    except json_input.DuplicateKeyError as e:
        raise _ImportRefused(f"The field {e.key!r} is given more than once; which value is meant "
                             "is ambiguous.") from None
    except (json_input.TooDeepError, json_input.LoneSurrogateError) as e:
        raise _ImportRefused(f"The file cannot be used: {e}.") from None
    except ValueError as e:  # (not UTF-8, or not JSON)
        raise _ImportRefused(f"The file is not valid JSON ({e.__class__.__name__}: {e}).") from None
    provenance: dict[str, Any] = {}
    gaps: list[Any] = []
    source = "patient facts (JSON)"
    answer = None
    if isinstance(data, dict) and data.get("resourceType") == "Bundle":
        try:  # the service's one door: mapping, cross-checks, recommendation and audit
            answer = pages.backend.answer_bundle(data, caller="web")
        except NotImplementedError as e:
            raise _ImportRefused(str(e)) from None
        except Exception as e:  # a mapper failure must not become a stack trace
            if type(e).__module__.startswith("sqlalchemy"):
                raise  # a storage failure: the service's 503 page, not "cannot be read"
            raise _ImportRefused("The FHIR bundle could not be read "
                                 f"({e.__class__.__name__}).") from None
        facts, provenance, gaps = answer.facts, answer.provenance, answer.gaps
        source = "FHIR / mCODE bundle"
    elif isinstance(data, dict) and isinstance(data.get("facts"), dict):
        facts = data["facts"]
    elif isinstance(data, dict):
        facts = data
    else:
        raise _ImportRefused("Expected a JSON object: patient facts, {\"facts\": {...}} "
                             "or a FHIR Bundle.")
    unknown = sorted(k for k in facts if k not in pages.fields)
    if unknown:
        raise _ImportRefused("Unknown fields (not in the contract; check the spelling): "
                             + ", ".join(unknown))
    return facts, {"source": source, "provenance": provenance, "gaps": gaps}, answer


@router.post("/import", response_class=HTMLResponse)
async def import_file(request: Request, who: Viewer, pages: PagesDep) -> HTMLResponse:
    """The recommendation for the imported facts, with where they came from."""
    return await run_in_threadpool(_import_page, request, pages, await _uploaded(request))


def _import_page(request: Request, pages: Pages, raw: bytes) -> HTMLResponse:
    """The import's answer (mapping, engine, audit commit, page): in the threadpool."""
    try:
        facts, imported, answer = _imported_facts(pages, raw)
    except _ImportRefused as e:
        return pages.render(request, "import.html", 422, error=str(e),
                            has_fhir=pages.backend.has_fhir)
    if (
        answer is not None and answer.recommendation is not None
    ):  # (already recommended and audited)
        return pages.render(request, "patient.html", sections=SECTIONS, fields=pages.fields,
                            values=form_values(facts), errors={},
                            **pages.result_context(facts, answer.recommendation, answer.audit_id),
                            imported=imported)
    return pages.answer(request, facts, "patient.html", imported=imported)

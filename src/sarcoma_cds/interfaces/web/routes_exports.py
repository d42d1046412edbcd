"""Downloads of a saved case: the board PDF, the pathway diagram (SVG), the recommendation
(contract JSON and CPG-on-FHIR Bundle) and the patient facts."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from sarcoma_cds.interfaces.api.deps import Viewer
from sarcoma_cds.interfaces.web import diagram
from sarcoma_cds.interfaces.web.pages import STATIC, PagesDep, SavedCase
from sarcoma_cds.interfaces.web.pdf import PdfUnavailable, html_to_pdf

router = APIRouter(include_in_schema=False)


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"'}


@router.get("/cases/{cid}/board.pdf")
def board_pdf(request: Request, who: Viewer, case: SavedCase, pages: PagesDep) -> Response:
    """The board sheet as PDF (503 with a pointer to the print view without WeasyPrint)."""
    templates = pages.templates
    html = templates.get_template("board.html").render(
        request=request, pdf=True, **pages.case_context(case), **templates.env.globals)
    try:
        data = html_to_pdf(html, STATIC, [STATIC / "web.css"])
    except PdfUnavailable as e:
        return pages.render(request, "error.html", 503, title="PDF not available",
                            message=f"{e}. Use the print view instead: "
                                    "it prints to PDF from the browser.")
    return Response(data, media_type="application/pdf",
                    headers=_attachment(f"tumour-board-{case.id[:12]}.pdf"))


@router.get("/cases/{cid}/diagram.svg")
def diagram_svg(who: Viewer, case: SavedCase, pages: PagesDep) -> Response:
    """The decision diagram as a standalone SVG file."""
    svg = diagram.render(case.recommendation, case.facts, pages.kb)
    return Response('<?xml version="1.0" encoding="UTF-8"?>\n' + svg, media_type="image/svg+xml")


@router.get("/cases/{cid}/recommendation.json")
def export_json(who: Viewer, case: SavedCase) -> JSONResponse:
    """The recommendation as served (contract JSON)."""
    return JSONResponse(case.recommendation,
                        headers=_attachment(f"recommendation-{case.id[:12]}.json"))


@router.get("/cases/{cid}/facts.json")
def export_facts(who: Viewer, case: SavedCase) -> JSONResponse:
    """The case's facts (404 when the record did not keep them)."""
    if not case.facts:
        raise HTTPException(404, "The facts of this record were not kept "
                                 "(it was not saved as a case).")
    return JSONResponse(case.facts, headers=_attachment(f"patient-facts-{case.id[:12]}.json"))


@router.get("/cases/{cid}/recommendation.fhir.json")
def export_fhir(request: Request, who: Viewer, case: SavedCase, pages: PagesDep) -> Response:
    """The recommendation as a CPG-on-FHIR Bundle."""
    try:
        bundle = pages.backend.recommendation_to_fhir(case.recommendation, case.facts, case.id)
    except NotImplementedError as e:
        return pages.render(request, "error.html", 501, title="FHIR export not available",
                            message=str(e))
    return JSONResponse(bundle, media_type="application/fhir+json",
                        headers=_attachment(f"recommendation-{case.id[:12]}.fhir.json"))

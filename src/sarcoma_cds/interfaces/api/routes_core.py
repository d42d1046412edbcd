"""Core REST routes: the API index, health, version, patient groups and recommendations.

``POST /recommendations`` keeps the event loop free (issue 13): the engine, the audit row and
the JSON run in the threadpool, the answer is the recommendation's cached contract JSON
(``Services.render``), and the route awaits the group commit of its audit record
(``Services.commit_async``) before it answers, so no answer goes out before its record is
durable.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from sarcoma_cds import __version__
from sarcoma_cds.interfaces.api.deps import ApiCaller, JsonBody, RequestId, ServicesDep
from sarcoma_cds.interfaces.api.errors import NotFound, Unavailable
from sarcoma_cds.interfaces.api.openapi import FACTS_SCHEMA, json_request_body
from sarcoma_cds.interfaces.api.problems import problem_responses
from sarcoma_cds.interfaces.shapes import groups_document

router = APIRouter()


@router.get("/api", summary="API index", tags=["meta"])
def api_index(services: ServicesDep) -> dict[str, Any]:
    return {
        "service": "sarcoma-cds", "version": __version__, "disclaimer": services.disclaimer,
        "links": {"openapi": "/openapi.json", "docs": "/api/docs",
                  "recommendations": "/recommendations", "groups": "/groups",
                  "fhir": "/fhir/recommendations", "cds_services": "/cds-services",
                  "audit": "/audit", "health": "/healthz", "version": "/version"},
    }


@router.get("/healthz", tags=["meta"], responses=problem_responses(503))
def healthz(services: ServicesDep) -> Any:
    """``ok`` only when the audit store answers and accepts a write (probed, rolled back): a
    service that cannot record cannot answer (issue 12)."""
    state = services.store.health()
    retry = {"Retry-After": "30"}
    if state == "unreachable":
        raise Unavailable("database unavailable", database=state, headers=retry)
    if state != "ok":
        raise Unavailable("database cannot be written (read-only file, full disk or read-only "
                          "transaction): recommendations cannot be recorded", database=state,
                          headers=retry)
    return {"status": "ok", "database": "ok"}


@router.get("/version", tags=["meta"])
def version(services: ServicesDep) -> dict[str, Any]:
    kb = services.kb
    return {"service": __version__,
            "guideline": {"id": kb.data.meta.id, "version": kb.version,
                          "content_hash": kb.content_hash}}


@router.get("/groups", tags=["knowledge base"], responses=problem_responses(401))
def groups(who: ApiCaller, services: ServicesDep) -> Any:
    return groups_document(services.kb)


@router.get("/groups/{group_id}", tags=["knowledge base"], responses=problem_responses(401, 404))
def group(group_id: str, who: ApiCaller, services: ServicesDep) -> Any:
    g = services.kb.groups.get(group_id)
    if g is None:
        raise NotFound(f"no patient group {group_id!r}")
    data = g.model_dump(mode="json")
    for pi, p in enumerate(g.pathways):
        for si, s in enumerate(p.steps):
            data["pathways"][pi]["steps"][si]["treatment"] = s.treatment
    return data


@router.post(
    "/recommendations", tags=["recommendations"],
    summary="Patient facts (contract) in, recommendation (contract) out",
    openapi_extra=json_request_body(schema=FACTS_SCHEMA),
    responses={200: {"description": "The recommendation (decision support, not an order)",
                     "content": {"application/json": {
                         "schema": {"$ref": "#/components/schemas/Recommendation"}}}},
               **problem_responses(400, 401, 413, 422)},
)
async def post_recommendation(who: ApiCaller, body: JsonBody, services: ServicesDep,
                              request_id: RequestId) -> Any:
    prep = await run_in_threadpool(services.prepare, body, "rest", who, request_id=request_id)
    audit_id = await services.commit_async(prep.row)
    return Response(prep.rendered.body, media_type="application/json",
                    headers={"X-Audit-ID": audit_id})

"""The FHIR route: an mCODE Bundle in; facts, provenance, gaps and the recommendation out."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from sarcoma_cds import InvalidFacts, parse_facts
from sarcoma_cds.interfaces.api.deps import ApiCaller, JsonBody, RequestId, ServicesDep
from sarcoma_cds.interfaces.api.errors import InvalidInput, invalid_facts_errors
from sarcoma_cds.interfaces.api.openapi import json_request_body
from sarcoma_cds.interfaces.api.problems import problem_responses

router = APIRouter()

@router.post(
    "/fhir/recommendations", tags=["FHIR"],
    summary="mCODE Bundle in: facts, provenance, gaps, recommendation and its CPG Bundle out",
    openapi_extra=json_request_body("application/fhir+json", "application/json"),
    responses={200: {"description": "Mapped facts and the recommendation"},
               **problem_responses(400, 401, 413, 422)},
)
async def post_fhir(who: ApiCaller, bundle: JsonBody, services: ServicesDep,
                    request_id: RequestId) -> Any:
    mapped = services.facts_from_bundle_full(bundle)
    try:
        facts = parse_facts(mapped.facts)
    except InvalidFacts as e:
        raise InvalidInput("the bundle does not give valid contract facts: "
                           + "; ".join(f for f, _ in e.problems), errors=invalid_facts_errors(e),
                           facts=mapped.facts, provenance=mapped.provenance,
                           gaps=mapped.gaps) from None
    rec, audit_id = services.recommend_and_record(facts.model_dump(exclude_none=True), "fhir", who,
                                                  request_id=request_id)
    gaps = list(mapped.gaps)
    for sg in mapped.reported.get("stage_group", []):
        if rec.stage is not None and rec.stage.group and sg["value"] not in (rec.stage.group,
                                                                             rec.stage.group[:-1]):
            gaps.append({"resource": sg["resource"], "element": "valueCodeableConcept",
                         "problem": f"data_conflict: recorded stage group {sg['value']} differs "
                                    f"from the computed AJCC 8 stage {rec.stage.group}"})
    return JSONResponse({
        "audit_id": audit_id, "facts": mapped.facts, "provenance": mapped.provenance, "gaps": gaps,
        "recommendation": rec.model_dump(mode="json"),
        "fhir": services.recommendation_to_fhir(rec, mapped.facts, audit_id=audit_id),
        "disclaimer": services.disclaimer,
    }, headers={"X-Audit-ID": audit_id})

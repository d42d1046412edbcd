"""The FHIR route: an mCODE Bundle in; facts, provenance, gaps and the recommendation out.

The mapping, the engine, the CPG Bundle and the JSON run in the threadpool (never on the event
loop); the audit record is group-committed and awaited before the answer (issue 13).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from sarcoma_cds.interfaces.api.deps import ApiCaller, JsonBody, RequestId, ServicesDep
from sarcoma_cds.interfaces.api.errors import InvalidInput
from sarcoma_cds.interfaces.api.openapi import json_request_body
from sarcoma_cds.interfaces.api.problems import problem_responses
from sarcoma_cds.interfaces.api.services import BundleAnswer, Services

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
    # the one door for "bundle -> answer" (mapping, cross-checks, recommendation, audit row)
    ans = await run_in_threadpool(services.answer_bundle, bundle, "fhir", who,
                                  request_id=request_id, write=False)
    if ans.recommendation is None or ans.audit_id is None or ans.row is None:
        raise InvalidInput("the bundle does not give valid contract facts: "
                           + "; ".join(f for f, _ in ans.problems),
                           errors=[{"field": f, "message": m} for f, m in ans.problems],
                           facts=ans.facts, provenance=ans.provenance, gaps=ans.gaps)
    body = await run_in_threadpool(_answer_json, services, ans)
    audit_id = await services.commit_async(ans.row)
    return Response(body, media_type="application/json", headers={"X-Audit-ID": audit_id})


def _answer_json(services: Services, ans: BundleAnswer) -> bytes:
    rec, audit_id = ans.recommendation, ans.audit_id
    assert rec is not None and audit_id is not None
    return json.dumps({
        "audit_id": audit_id, "facts": ans.facts, "provenance": ans.provenance, "gaps": ans.gaps,
        "recommendation": rec.model_dump(mode="json"),
        "fhir": services.recommendation_to_fhir(rec, ans.facts, audit_id=audit_id,
                                                patient_ref=ans.reported.get("patient")),
        "disclaimer": services.disclaimer,
    }, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()

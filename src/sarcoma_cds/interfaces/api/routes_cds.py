"""CDS Hooks 2.0.1 routes: discovery, service calls and feedback (JWT-authenticated clients)."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from sarcoma_cds.interfaces.api import cds_hooks
from sarcoma_cds.interfaces.api.deps import CdsClaims, JsonBody, RequestId, ServicesDep, base_for
from sarcoma_cds.interfaces.api.errors import BadRequest, PreconditionFailed
from sarcoma_cds.interfaces.api.openapi import json_request_body

log = logging.getLogger("sarcoma_cds.service")

router = APIRouter()

_JSON_BODY = json_request_body()


@router.get("/cds-services", tags=["CDS Hooks"], summary="CDS Hooks discovery")
def cds_discovery() -> dict[str, Any]:
    return cds_hooks.discovery()


@router.post("/cds-services/{service_id}", tags=["CDS Hooks"], openapi_extra=_JSON_BODY,
             responses={200: {"description": "CDS Hooks cards"},
                        401: {"description": "Unauthorized"},
                        404: {"description": "Unknown service"},
                        400: {"description": "Bad request"},
                        412: {"description": "Data neither prefetched nor fetchable"},
                        413: {"description": "Too large"}})
async def cds_call(service_id: str, claims: CdsClaims, body: JsonBody, request: Request,
                   services: ServicesDep, request_id: RequestId) -> Any:
    if not isinstance(body, dict):
        raise BadRequest("expected a CDS Hooks request object")
    def answer() -> bytes:  # the hook and its JSON in the threadpool, never on the event loop
        cards = cds_hooks.run_hook(services, service_id, body, caller=f"cds:{claims['iss']}",
                                   request_id=request_id, base_url=base)
        return json.dumps(cards, ensure_ascii=False, allow_nan=False,
                          separators=(",", ":")).encode()

    base = base_for(request)
    try:
        return Response(await run_in_threadpool(answer), media_type="application/json")
    except cds_hooks.BadHookRequest as e:
        raise BadRequest(str(e)) from None
    except cds_hooks.PreconditionFailed as e:
        log.info("request_id=%s 412: %s", request_id, e)
        raise PreconditionFailed(str(e)) from None


def _feedback_items(body: Any) -> list[dict[str, Any]]:
    """The feedback items of a feedback request, checked (400 names the first bad one)."""
    items = body.get("feedback") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise BadRequest("expected {\"feedback\": [...]}")
    parsed = []
    for i, fb in enumerate(items):
        if not isinstance(fb, dict) or not isinstance(fb.get("card"), str):
            raise BadRequest(f"feedback[{i}].card (a card uuid) is required")
        if fb.get("outcome") not in ("accepted", "overridden"):
            raise BadRequest(f"feedback[{i}].outcome must be accepted or overridden")
        orr = fb.get("overrideReason")
        if orr is not None and not isinstance(orr, dict):
            raise BadRequest(f"feedback[{i}].overrideReason must be an object")
        acc = fb.get("acceptedSuggestions")
        if acc is not None and not isinstance(acc, list):
            raise BadRequest(f"feedback[{i}].acceptedSuggestions must be a list")
        parsed.append(fb)
    return parsed


def _outcome_time(fb: dict[str, Any]) -> datetime | None:
    if isinstance(fb.get("outcomeTimestamp"), str):
        try:
            return datetime.fromisoformat(fb["outcomeTimestamp"].replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


@router.post("/cds-services/{service_id}/feedback", tags=["CDS Hooks"], openapi_extra=_JSON_BODY,
             responses={200: {"description": "Stored"}, 400: {"description": "Bad request"},
                        401: {"description": "Unauthorized"},
                        404: {"description": "Unknown service"}})
async def cds_feedback(service_id: str, claims: CdsClaims, body: JsonBody,
                       services: ServicesDep) -> Any:
    items = _feedback_items(body)

    def record() -> None:  # database writes: in the threadpool, never on the event loop
        for fb in items:
            services.store.record_feedback(
                kind="cds_feedback", outcome=fb["outcome"], caller=f"cds:{claims['iss']}",
                service_id=service_id, card_uuid=fb["card"][:36], outcome_at=_outcome_time(fb),
                override_reason=fb.get("overrideReason"),
                accepted_suggestions=fb.get("acceptedSuggestions"))

    await run_in_threadpool(record)
    return {}

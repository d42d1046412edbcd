"""CDS Hooks 2.0.1 routes: discovery, service calls and feedback (JWT-authenticated clients)."""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from sarcoma_cds.interfaces.api import cds_hooks, fhir_fetch, rate_limit
from sarcoma_cds.interfaces.api.deps import (
    CdsClaims,
    CdsFeedbackClaims,
    JsonBody,
    RequestId,
    ServicesDep,
    base_for,
    get_access,
)
from sarcoma_cds.interfaces.api.errors import BadRequest, NotFound, PreconditionFailed
from sarcoma_cds.interfaces.api.fhir_fetch import FhirPolicy
from sarcoma_cds.interfaces.api.identity import app_context
from sarcoma_cds.interfaces.api.identity.state import get_identity
from sarcoma_cds.interfaces.api.openapi import json_request_body

log = logging.getLogger("sarcoma_cds.service")

router = APIRouter()

_JSON_BODY = json_request_body()
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


@router.get("/cds-services", tags=["CDS Hooks"], summary="CDS Hooks discovery")
def cds_discovery() -> dict[str, Any]:
    return cds_hooks.discovery()


@router.post("/cds-services/{service_id}", tags=["CDS Hooks"], openapi_extra=_JSON_BODY,
             responses={200: {"description": "CDS Hooks cards"},
                        401: {"description": "Unauthorized"},
                        403: {"description": "The CDS client lacks the viewer role"},
                        404: {"description": "Unknown service"},
                        400: {"description": "Bad request"},
                        412: {"description": "Data neither prefetched nor fetchable"},
                        413: {"description": "Too large"},
                        429: {"description": "Over this client's rate limit"}})
async def cds_call(service_id: str, claims: CdsClaims, body: JsonBody, request: Request,
                   services: ServicesDep, request_id: RequestId) -> Any:
    await rate_limit.enforce_async_for(request, f"cds:{claims['iss']}")  # 429 over the limit
    settings = services.settings
    base = base_for(request)
    try:
        patient_id = cds_hooks.check_request(service_id, body)
        ident = get_identity(request)
        # the keys not prefetched are read on the event loop (asynchronous, under a deadline),
        # only from a FHIR server on this client's allow-list (fhir_fetch)
        client = get_access(request).verifier.clients.get(claims["iss"])
        policy = client.fhir_policy(settings.dev_mode) if client else FhirPolicy()
        fetched = await fhir_fetch.fetch_missing(
            body, cds_hooks.missing_prefetch(body), policy, deadline_s=settings.fhir_deadline_s,
            timeout_s=settings.fhir_timeout_s, max_bytes=settings.fhir_max_bytes)

        def answer() -> bytes:  # the hook and its JSON in the threadpool, never on the event loop
            cards = cds_hooks.run_hook(services, service_id, body, caller=f"cds:{claims['iss']}",
                                       request_id=request_id, base_url=base, fetched=fetched)
            if ident.smart is not None and ident.secret is not None:  # the smart links' context
                app_context.bind_cards(cards, ident.secret, claims["iss"], patient_id)
            return json.dumps(cards, ensure_ascii=False, allow_nan=False,
                              separators=(",", ":")).encode()

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
        if not _UUID.fullmatch(fb["card"]):
            raise BadRequest(f"feedback[{i}].card must be a card uuid")
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
                        403: {"description": "The CDS client lacks the clinician role"},
                        404: {"description": "Unknown service, or a card not served to this "
                                             "client"},
                        429: {"description": "Over this client's rate limit"}})
async def cds_feedback(service_id: str, claims: CdsFeedbackClaims, body: JsonBody, request: Request,
                       services: ServicesDep) -> Any:
    caller = f"cds:{claims['iss']}"
    await rate_limit.enforce_async_for(request, caller)  # 429 over the client's limit
    items = _feedback_items(body)

    def store() -> None:
        # every card must have been served by this service to this client (its audit record
        # names the caller): no feedback on another client's cards nor on made-up ones; all
        # items are checked before any is stored
        audit_ids = []
        for i, fb in enumerate(items):
            audit_id = services.store.served_card(fb["card"], caller, service_id)
            if audit_id is None:
                raise NotFound(f"feedback[{i}].card: no card with this uuid was served to this "
                               "client by this service")
            audit_ids.append(audit_id)
        for fb, audit_id in zip(items, audit_ids, strict=True):
            services.store.record_feedback(
                kind="cds_feedback", outcome=fb["outcome"], caller=caller, audit_id=audit_id,
                service_id=service_id, card_uuid=fb["card"], outcome_at=_outcome_time(fb),
                override_reason=fb.get("overrideReason"),
                accepted_suggestions=fb.get("acceptedSuggestions"))

    await run_in_threadpool(store)  # database reads and writes: off the event loop
    return {}

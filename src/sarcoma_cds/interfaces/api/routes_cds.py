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
    CdsClaimsReplayPending,
    CdsFeedbackClaims,
    JsonBody,
    RequestId,
    ServicesDep,
    base_for,
    get_access,
    refuse_replayed_token,
)
from sarcoma_cds.interfaces.api.errors import BadRequest, NotFound, PreconditionFailed
from sarcoma_cds.interfaces.api.fhir_fetch import FhirPolicy
from sarcoma_cds.interfaces.api.identity import app_context
from sarcoma_cds.interfaces.api.identity.state import get_identity
from sarcoma_cds.interfaces.api.openapi import json_request_body
from sarcoma_cds.interfaces.api.security import replay_key

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
async def cds_call(service_id: str, claims: CdsClaimsReplayPending, body: JsonBody,
                   request: Request, services: ServicesDep, request_id: RequestId) -> Any:
    await rate_limit.enforce_async_for(request, f"cds:{claims['iss']}")  # 429 over the limit
    settings = services.settings
    store = services.store
    base = base_for(request)
    # the token's id is not stored yet (CdsClaimsReplayPending): it is stored with the call's
    # audit row in one group commit, before the answer (one commit per call, not two in a row);
    # a replayed token gets a bare 401, no cards and no audit record (issue 13)
    jti: tuple[str, str, datetime] | None = replay_key(claims)
    try:
        patient_id = cds_hooks.check_request(service_id, body)
        ident = get_identity(request)
        missing = cds_hooks.missing_prefetch(body)
        if missing and body.get("fhirServer"):  # no request to the client's FHIR server on a
            await _token_once(request, store, jti)  # replayed token: the token is spent first
            jti = None
        # the keys not prefetched are read on the event loop (asynchronous, under a deadline),
        # only from a FHIR server on this client's allow-list (fhir_fetch)
        client = get_access(request).verifier.clients.get(claims["iss"])
        policy = client.fhir_policy(settings.dev_mode) if client else FhirPolicy()
        fetched = await fhir_fetch.fetch_missing(
            body, missing, policy, deadline_s=settings.fhir_deadline_s,
            timeout_s=settings.fhir_timeout_s, max_bytes=settings.fhir_max_bytes)

        def answer() -> tuple[bytes, cds_hooks.HookAnswer]:  # CPU: in the threadpool
            ans = cds_hooks.prepare_hook(services, service_id, body,
                                         caller=f"cds:{claims['iss']}", request_id=request_id,
                                         base_url=base, fetched=fetched)
            if ident.smart is not None and ident.secret is not None:  # the smart links' context
                app_context.bind_cards(ans.result, ident.secret, claims["iss"], patient_id)
            return json.dumps(ans.result, ensure_ascii=False, allow_nan=False,
                              separators=(",", ":")).encode(), ans

        payload, ans = await run_in_threadpool(answer)
    except (cds_hooks.BadHookRequest, cds_hooks.PreconditionFailed) as e:
        await _token_once(request, store, jti)  # a refused call spends its token too
        if isinstance(e, cds_hooks.PreconditionFailed):
            log.info("request_id=%s 412: %s", request_id, e)
            raise PreconditionFailed(str(e)) from None
        raise BadRequest(str(e)) from None
    if ans.row is None:  # no recommendation (an info card): nothing to record
        await _token_once(request, store, jti)
    elif jti is None:
        await services.commit_async(ans.row, ans.card_uuids, service_id)
    elif await store.submit_record_once_async(ans.row, ans.card_uuids, service_id, jti) is None:
        raise refuse_replayed_token(request)  # (its audit row was not written)
    return Response(payload, media_type="application/json")


async def _token_once(request: Request, store: Any,
                      jti: tuple[str, str, datetime] | None) -> None:
    """Store the token's id now (a group commit) unless it is stored already (``jti`` None);
    a replay is refused with a bare 401."""
    if jti is not None and not await store.remember_jti_async(*jti):
        raise refuse_replayed_token(request)


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

"""Audit routes: pages of the audit trail and single records (an API key is always required)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from sarcoma_cds.interfaces.api.deps import KeyedCaller, ServicesDep, keyed_caller
from sarcoma_cds.interfaces.api.errors import NotFound
from sarcoma_cds.interfaces.api.problems import problem_responses

router = APIRouter()


@dataclass(frozen=True)
class AuditPage:
    """At most ``limit`` records after sequence number ``after``, of one interface or all."""

    limit: int
    after: int
    interface: str | None


#: Largest ``after``: the sequence column is a 32-bit integer on PostgreSQL (and SQLite takes
#: no integer over 64 bits); a larger cursor was a 500 before, it is now a 422.
MAX_SEQ = 2**31 - 1


def _page(limit: int = Query(50, ge=1, le=500), after: int = Query(0, ge=0, le=MAX_SEQ),
          interface: str | None = Query(None, max_length=20)) -> AuditPage:
    return AuditPage(limit, after, interface)


def _keyed_page(request: Request, page: Annotated[AuditPage, Depends(_page)]) -> AuditPage:
    """The page asked for, once the caller's key is checked. The key check depends on the
    query so that FastAPI validates the query first: an invalid query is a 422 whether or not
    the key is valid, as it was when the check ran inside the route."""
    keyed_caller(request)
    return page


@router.get("/audit", tags=["audit"], responses=problem_responses(401, 422))
def audit(page: Annotated[AuditPage, Depends(_keyed_page)], services: ServicesDep) -> Any:
    limit, after, interface = page.limit, page.after, page.interface
    items, nxt = services.store.page(limit=limit, after=after, interface=interface)
    body: dict[str, Any] = {"items": items, "next_after": nxt}
    if nxt is not None:
        body["next"] = (f"/audit?limit={limit}&after={nxt}"
                        + (f"&interface={interface}" if interface else ""))
    return body


@router.get("/audit/{audit_id}", tags=["audit"], responses=problem_responses(401, 404))
def audit_one(audit_id: str, who: KeyedCaller, services: ServicesDep) -> Any:
    rec = services.store.get_record(audit_id)
    if rec is None:
        raise NotFound("no such audit record")
    return rec

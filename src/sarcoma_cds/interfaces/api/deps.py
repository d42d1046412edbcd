"""FastAPI dependencies of the service routes: services, caller identity, request body.

``create_app`` puts one :class:`Access` (API keys, the CDS Hooks JWT verifier, the public
base URL) and the :class:`~sarcoma_cds.interfaces.api.services.Services` on ``app.state``;
routes receive them, and the authenticated caller, by declaring a dependency, so no route
is a closure over ``create_app``'s locals and each router module stands alone. A dependency
refuses a request by raising an :mod:`~sarcoma_cds.interfaces.api.errors` exception.

FastAPI runs a route's dependencies in the order they are declared: routes declare the
caller before the body, so an unauthenticated request is refused before its body is read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from sarcoma_cds.interfaces import json_input
from sarcoma_cds.interfaces.api import cds_hooks, rate_limit
from sarcoma_cds.interfaces.api.errors import (
    BadRequest,
    InvalidInput,
    NotFound,
    TokenRefused,
    Unauthorized,
    request_id,
)
from sarcoma_cds.interfaces.api.identity.errors import (
    Forbidden,
    RoleMissing,
    SignInNotConfigured,
    SignInRequired,
)
from sarcoma_cds.interfaces.api.identity.principal import (
    LEGACY_KEY_ROLES,
    LOCAL_ROLES,
    Principal,
)
from sarcoma_cds.interfaces.api.identity.roles import AUDITOR, CLINICIAN, DOES, VIEWER
from sarcoma_cds.interfaces.api.identity.state import get_identity
from sarcoma_cds.interfaces.api.security import AuthError, JwtVerifier, check_api_key
from sarcoma_cds.interfaces.api.services import Services

log = logging.getLogger("sarcoma_cds.service")

#: Bodies up to this size are parsed on the event loop (cheaper than a thread hop); larger ones
#: (FHIR Bundles, CDS Hooks prefetch) in the threadpool, so they never stall other requests.
PARSE_ON_LOOP_MAX = 4096


@dataclass(frozen=True)
class Access:
    """Who may call: API keys ({sha256: name}; empty: the REST API is open) for the REST API,
    the JWT verifier for CDS Hooks clients, and the base URL their token audience names."""

    api_keys: dict[str, str]
    verifier: JwtVerifier
    base_url: str | None
    key_roles: dict[str, frozenset[str]] = field(default_factory=dict)  # {key name: roles}


def get_services(request: Request) -> Services:
    """The service layer of the app serving this request."""
    services: Services = request.app.state.services
    return services


def get_access(request: Request) -> Access:
    """The access configuration of the app serving this request."""
    access: Access = request.app.state.access
    return access


def rid(request: Request) -> str:
    """The request id (set by the request-context middleware)."""
    return request_id(request)


def api_principal(request: Request, *, always: bool = False, limit: bool = True) -> Principal:
    """The caller of a REST route: the holder of an API key (its roles from the key file), or
    the local user in the embedded default (no keys, no sign-in) unless ``always`` (then 401).
    With sign-in configured but no keys, the REST API is closed (401)."""
    access = get_access(request)
    if not access.api_keys:
        if get_identity(request).mode != "local":  # sign-in without keys: the API is closed
            raise Unauthorized("this endpoint needs an API key; none are configured "
                               "(SARCOMA_CDS_API_KEYS), and web sign-in does not open the API")
        if always:
            raise Unauthorized("this endpoint needs an API key; "
                               "none are configured (SARCOMA_CDS_API_KEYS)")
        return Principal(kind="local", subject="local", display_name="local",
                         roles=LOCAL_ROLES)
    name = check_api_key(access.api_keys, request.headers.get("authorization"))
    if name is None:
        log.info("request_id=%s API key missing or unknown", rid(request))
        raise Unauthorized("a valid API key is required (Authorization: Bearer <key>)")
    if limit:  # 429 over the client's limit (blocking: the async dependencies limit apart)
        rate_limit.enforce_for(request, f"apikey:{name}")
    return Principal(kind="apikey", subject=name, display_name=name,
                     roles=access.key_roles.get(name, LEGACY_KEY_ROLES))


def _need(p: Principal, role: str, request: Request) -> None:
    if not p.has(role):
        log.info("request_id=%s caller lacks role %s", rid(request), role)
        raise Forbidden(f"this endpoint needs the {role} role (to {DOES[role]}); "
                        f"the API key {p.subject!r} does not have it")


def _caller(request: Request, *, always: bool, role: str) -> str:
    p = api_principal(request, always=always)
    _need(p, role, request)
    return _caller_name(p)


def _caller_name(p: Principal) -> str:
    return "local" if p.kind == "local" else f"apikey:{p.subject}"


async def _caller_async(request: Request, *, always: bool, role: str) -> str:
    """:func:`_caller` on the event loop: the rate limit claims from the database (rarely) in a
    worker thread, everything else is in memory."""
    p = api_principal(request, always=always, limit=False)
    if p.kind == "apikey":
        await rate_limit.enforce_async_for(request, f"apikey:{p.subject}")
    _need(p, role, request)
    return _caller_name(p)


def api_caller(request: Request) -> str:
    """The caller of a REST route: ``apikey:<name>``, or ``local`` when no keys are configured.
    The key needs the viewer role (every key listed without roles has it)."""
    return _caller(request, always=False, role=VIEWER)


def keyed_caller(request: Request) -> str:
    """Like :func:`api_caller`, but an API key with the auditor role is required even when
    no keys are configured (the audit trail is never open)."""
    return _caller(request, always=True, role=AUDITOR)


# ------------------------------------------------------------------ web pages (issue 12)

def web_user(request: Request) -> Principal | None:
    """The user of a web page: the local user (embedded default), the signed-in user, or
    None. For pages that show more to a signed-in user but stay public (the home page)."""
    return get_identity(request).web_principal(request)


def _web_guard(role: str) -> Callable[[Request], Principal]:
    def guard(request: Request) -> Principal:
        ident = get_identity(request)
        p = ident.web_principal(request)
        if p is None:
            if not ident.signin:
                raise SignInNotConfigured()
            q = request.url.query
            raise SignInRequired(request.url.path + (f"?{q}" if q else "")
                                 if request.method == "GET" else "/")
        if not p.has(role):
            raise RoleMissing(role, p.display_name)
        return p

    guard.__name__ = f"web_{role}"
    guard.__doc__ = f"The web user, who must have the {role} role (else sign-in or 403)."
    return guard


web_viewer = _web_guard(VIEWER)
web_clinician = _web_guard(CLINICIAN)


async def json_body(request: Request) -> Any:
    """The request body parsed as JSON (400 when it is empty or not JSON)."""
    raw = await request.body()
    if not raw:
        raise BadRequest("request body is empty; expected JSON")
    try:
        if len(raw) > PARSE_ON_LOOP_MAX:  # (a CDS Hooks prefetch, a FHIR Bundle)
            return await run_in_threadpool(json_input.loads, raw)
        return json_input.loads(raw)
    except (
        json_input.DuplicateKeyError
    ) as e:  # (a record with two values of one field is ambiguous)
        raise InvalidInput(
            f"{e}: {e.message}", errors=[{"field": e.key, "message": e.message}]
        ) from None
    except json_input.LoneSurrogateError as e:  # (valid JSON, but not text: issue 12)
        raise InvalidInput(str(e), errors=[{"field": e.path, "message": e.message}]) from None
    except json_input.TooDeepError as e:
        raise BadRequest(f"request body refused: {e}") from None
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("request body is not valid JSON") from None


def base_for(request: Request) -> str:
    """The service's public base URL (configured, else taken from the request)."""
    return get_access(request).base_url or str(request.base_url).rstrip("/")


async def _cds_claims(service_id: str, request: Request, role: str,
                      replay_check: bool = True) -> dict[str, Any]:
    if service_id not in cds_hooks.HOOKS:
        raise NotFound(f"no CDS service {service_id!r}")
    audience = base_for(request) + request.url.path
    access = get_access(request)
    try:
        claims = await access.verifier.verify(request.headers.get("authorization"), audience,
                                              replay_check=replay_check)
    except AuthError as e:
        log.warning("request_id=%s CDS Hooks token refused: %s", rid(request), e)
        raise TokenRefused() from None
    client = access.verifier.clients.get(str(claims.get("iss")))
    if client is None or role not in client.roles:  # (issue 12: CDS clients have roles too)
        log.info("request_id=%s CDS client lacks role %s", rid(request), role)
        raise Forbidden(f"this CDS service needs the {role} role (to {CDS_DOES[role]}); "
                        "the CDS client's entry in the clients file "
                        "(SARCOMA_CDS_CLIENTS_FILE) does not give it")
    return claims


#: What a CDS client's role lets it do (for the 403 problem document).
CDS_DOES = {VIEWER: "call the CDS services", CLINICIAN: "send feedback on cards"}


async def cds_caller(service_id: str, request: Request) -> dict[str, Any]:
    """The verified JWT claims of a CDS client calling a known service (404 for an unknown
    service, a bare 401 for a refused token, 403 with a problem document when the client's
    entry in the clients file lacks the ``viewer`` role). Asynchronous: a JWK Set download
    never holds a worker thread (issue 12, denial of service)."""
    return await _cds_claims(service_id, request, VIEWER)


async def cds_feedback_caller(service_id: str, request: Request) -> dict[str, Any]:
    """Like :func:`cds_caller` for the feedback endpoint: the client needs the ``clinician``
    role (feedback records the clinician's outcome of a card)."""
    return await _cds_claims(service_id, request, CLINICIAN)


async def cds_caller_replay_pending(service_id: str, request: Request) -> dict[str, Any]:
    """:func:`cds_caller` (the ``viewer`` role included) without the ``jti`` replay store: the
    route MUST store the token id (``security.replay_key``) and refuse a replay
    (:func:`refuse_replayed_token`) before it answers. The service call stores it in the group
    commit of its audit row (one commit per call instead of two in a row; issue 13)."""
    return await _cds_claims(service_id, request, VIEWER, replay_check=False)


def refuse_replayed_token(request: Request) -> TokenRefused:
    """The bare 401 of a replayed CDS Hooks token (logged as :func:`cds_caller` logs it)."""
    log.warning("request_id=%s CDS Hooks token refused: jti replayed", rid(request))
    return TokenRefused()


# FastAPI runs a plain ``def`` dependency in the threadpool: a thread hop per dependency per
# request. These do no I/O (attribute reads, a SHA-256 of the key), so they are declared as
# coroutines and run on the event loop (issue 13). Blocking work (the CDS JWT check, which
# writes the replay store) stays a plain ``def`` and runs in the threadpool.
async def _services_dep(request: Request) -> Services:
    return get_services(request)


async def _api_caller_dep(request: Request) -> str:
    return await _caller_async(request, always=False, role=VIEWER)


async def _keyed_caller_dep(request: Request) -> str:
    return await _caller_async(request, always=True, role=AUDITOR)


async def _rid_dep(request: Request) -> str:
    return rid(request)


ServicesDep = Annotated[Services, Depends(_services_dep)]
ApiCaller = Annotated[str, Depends(_api_caller_dep)]
KeyedCaller = Annotated[str, Depends(_keyed_caller_dep)]
JsonBody = Annotated[Any, Depends(json_body)]
CdsClaims = Annotated[dict[str, Any], Depends(cds_caller)]
CdsFeedbackClaims = Annotated[dict[str, Any], Depends(cds_feedback_caller)]
#: verified claims whose token id is not yet stored: see :func:`cds_caller_replay_pending`
CdsClaimsReplayPending = Annotated[dict[str, Any], Depends(cds_caller_replay_pending)]
RequestId = Annotated[str, Depends(_rid_dep)]
WebUser = Annotated[Principal | None, Depends(web_user)]
Viewer = Annotated[Principal, Depends(web_viewer)]
Clinician = Annotated[Principal, Depends(web_clinician)]

"""SMART on FHIR launch (SMART App Launch 2.x): the app opened from the EHR (EHR launch:
``iss`` and ``launch``) or by the user (standalone launch: ``iss`` only) with a patient in
context.

``GET /smart/launch?iss=<FHIR base>&launch=<opaque>`` accepts only a FHIR server on
``SARCOMA_CDS_SMART_ISSUERS`` (nothing is fetched from any other), discovers its authorization
server (``<iss>/.well-known/smart-configuration``), and redirects there with PKCE (S256),
``state``, ``nonce``, ``aud=<iss>`` and the scopes ``launch openid fhirUser patient/*.rs``
(``launch/patient`` instead of ``launch`` for a standalone launch). ``GET /smart/callback``
checks the state, trades the code (public client ``SARCOMA_CDS_SMART_CLIENT_ID``), verifies the
ID token (signature by the server's JWKS, ``iss``, ``aud``, ``exp``, ``nonce``), reads the
token response's ``patient`` from the FHIR server through the FHIR reader
(``Services.answer_bundle``, interface ``web``, caller the ``fhirUser``), opens a session
(kind ``smart``: roles viewer and clinician, context = the FHIR server and patient; the access
token is not kept) and shows the result page. A launch from a CDS card's ``smart`` link
(the token response gives back the card's ``appContext``) opens the card's record instead, only
when :mod:`.app_context` binds it to the launched patient and to a CDS client of the launching
EHR; otherwise the fresh result says why the card's record is not shown.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from sarcoma_cds.interfaces.api.identity import app_context
from sarcoma_cds.interfaces.api.identity.errors import _page
from sarcoma_cds.interfaces.api.identity.oidc import (
    STATE_MAX_AGE_S,
    OidcClient,
    OidcError,
    new_pending,
    same_state,
)
from sarcoma_cds.interfaces.api.identity.principal import Principal
from sarcoma_cds.interfaces.api.identity.roles import CLINICIAN, VIEWER, expand
from sarcoma_cds.interfaces.api.identity.state import Identity, get_identity

log = logging.getLogger("sarcoma_cds.service.identity")

router = APIRouter(include_in_schema=False)

CALLBACK = "/smart/callback"
SCOPES = "openid fhirUser patient/*.rs"
#: A user the EHR launched the app for (the EHR authenticated them and opened this patient).
SMART_ROLES = expand({VIEWER, CLINICIAN})
_PATIENT_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
#: The launching users who get a session: practitioners. A standalone launch is also how a
#: patient (``fhirUser`` = ``Patient/...``) or a relative opens an app from the EHR's portal,
#: and a session has the clinician role over every saved case, not only the launch's patient.
_CLINICAL_USER = re.compile(r"(Practitioner|PractitionerRole)/[A-Za-z0-9\-.]{1,64}")
FAILED = ("The launch from the EHR did not succeed. Open the app from the EHR again; if it "
          "fails again, quote the time to the service's administrator.")


def _rid(request: Request) -> str:
    return str(getattr(request.state, "request_id", "-"))


#: A FHIR server's SMART configuration is read once per this many seconds; after a failure,
#: launches are refused from memory for :data:`SMART_RETRY_S`. ``/smart/launch`` is public: an
#: anonymous flood of launches must neither hammer the EHR nor hold the worker threads.
SMART_TTL_S = 300.0
SMART_RETRY_S = 10.0
_smart_lock = threading.Lock()
_smart_cache: dict[str, tuple[float, dict[str, Any] | None]] = {}  # iss: (when, meta or failed)
_smart_reading: set[str] = set()


def smart_configuration(iss: str, timeout: float) -> dict[str, Any]:
    """The FHIR server's SMART configuration, cached (see :data:`SMART_TTL_S`). While one
    request reads it, the others are refused at once (single flight, no thread waits)."""
    now = time.monotonic()
    with _smart_lock:
        at, cached = _smart_cache.get(iss, (0.0, None))
        if cached is not None and now - at < SMART_TTL_S:
            return cached
        if cached is None and at and now - at < SMART_RETRY_S:
            raise OidcError("SMART configuration not readable (a recent attempt failed)")
        if iss in _smart_reading:
            raise OidcError("SMART configuration being read by another request")
        _smart_reading.add(iss)
    meta: dict[str, Any] | None = None
    try:
        meta = _read_smart_configuration(iss, timeout)
        return meta
    finally:
        with _smart_lock:
            _smart_reading.discard(iss)
            _smart_cache[iss] = (time.monotonic(), meta)


def _read_smart_configuration(iss: str, timeout: float) -> dict[str, Any]:
    """The FHIR server's SMART configuration (its authorization and token endpoints)."""
    url = iss.rstrip("/") + "/.well-known/smart-configuration"
    try:
        r = httpx.get(url, timeout=timeout, headers={"Accept": "application/json"},
                      follow_redirects=False)
        r.raise_for_status()
        meta = r.json()
    except (httpx.HTTPError, ValueError) as e:
        raise OidcError(f"SMART configuration not readable: {type(e).__name__}") from None
    if not isinstance(meta, dict):
        raise OidcError("SMART configuration is not a JSON object")
    for k in ("authorization_endpoint", "token_endpoint", "issuer", "jwks_uri"):
        if not isinstance(meta.get(k), str):
            raise OidcError(f"SMART configuration has no {k}")
    if "S256" not in (meta.get("code_challenge_methods_supported") or ["S256"]):
        raise OidcError("the authorization server does not support PKCE S256")
    return meta


def _redirect_uri(ident: Identity, request: Request) -> str:
    return (ident.base_url or str(request.base_url).rstrip("/")) + CALLBACK


@router.get("/smart/launch")
def smart_launch(request: Request, iss: str = "", launch: str = "") -> Response:
    """Begin a SMART launch (EHR launch with ``launch``, standalone without)."""
    ident = get_identity(request)
    if ident.smart is None or ident.smart_state is None:
        return _page(request, 404, "SMART launch is not configured",
                     "This server does not accept launches from an EHR "
                     "(SARCOMA_CDS_SMART_ISSUERS, SARCOMA_CDS_SMART_CLIENT_ID).")
    fhir = iss.strip().rstrip("/")
    if fhir not in ident.smart.issuers:
        log.warning("request_id=%s SMART launch from a FHIR server not on the allow-list",
                    _rid(request))
        return _page(request, 403, "Launch refused",
                     "This app may be launched only from the FHIR servers it is configured "
                     "for (SARCOMA_CDS_SMART_ISSUERS); this one is not among them.")
    if len(launch) > 2000:
        return _page(request, 400, "Launch refused", "The launch parameter is too long.")
    timeout = ident.oidc.timeout_s if ident.oidc else 5.0
    try:
        meta = smart_configuration(fhir, timeout)
    except OidcError as e:
        log.warning("request_id=%s SMART launch could not start: %s", _rid(request), e)
        return _page(request, 503, "Launch unavailable",
                     "The EHR's authorization server cannot be reached; try again in a moment.")
    pending, challenge = new_pending(fhir)
    query = {"response_type": "code", "client_id": ident.smart.client_id,
             "redirect_uri": _redirect_uri(ident, request),
             "scope": ("launch " if launch else "launch/patient ") + SCOPES,
             "state": pending.state, "nonce": pending.nonce, "aud": fhir,
             "code_challenge": challenge, "code_challenge_method": "S256"}
    if launch:
        query["launch"] = launch
    endpoint = meta["authorization_endpoint"]
    resp = RedirectResponse(endpoint + ("&" if "?" in endpoint else "?") + urlencode(query),
                            status_code=302)
    ident.set_cookie(resp, ident.smart_cookie, ident.smart_state.dump(pending), STATE_MAX_AGE_S)
    return resp


@router.get(CALLBACK)
def smart_callback(request: Request, code: str = "", state: str = "",
                   error: str = "") -> Response:
    """Finish a SMART launch: session for the EHR's user, then the patient's recommendation."""
    ident = get_identity(request)
    if ident.smart is None or ident.smart_state is None or ident.sessions is None:
        return _page(request, 404, "Not found", "SMART launch is not configured on this server.")
    try:
        pending = ident.smart_state.load(request.cookies.get(ident.smart_cookie))
        if error:
            raise OidcError(f"the authorization server answered error={error[:60]!r}")
        if not code or not state or not same_state(state, pending.state):
            raise OidcError("state does not match the launch begun in this browser")
        fhir = pending.next
        if fhir not in ident.smart.issuers:  # (the allow-list may have changed meanwhile)
            raise OidcError("the FHIR server is no longer on the allow-list")
        timeout = ident.oidc.timeout_s if ident.oidc else 5.0
        server = OidcClient.from_metadata(smart_configuration(fhir, timeout),
                                          ident.smart.client_id, timeout)
        tokens = server.exchange(code, _redirect_uri(ident, request), pending.verifier)
        claims = server.verify_id_token(tokens["id_token"], pending.nonce)
        access = tokens.get("access_token")
        if not isinstance(access, str) or not access:
            raise OidcError("the token response has no access token")
        patient = tokens.get("patient")
        if not isinstance(patient, str) or not _PATIENT_ID.fullmatch(patient):
            raise OidcError("the token response names no patient (a FHIR id)")
        info = server.userinfo(access, str(claims["sub"]))
    except OidcError as e:
        log.warning("request_id=%s SMART launch refused: %s", _rid(request), e)
        resp = _page(request, 400, "Launch failed", FAILED)
        ident.clear_cookie(resp, ident.smart_cookie)
        return resp
    merged = {**info, **claims}
    fhir_user = merged.get("fhirUser")
    user = str(fhir_user) if isinstance(fhir_user, str) and fhir_user else f"sub:{claims['sub']}"
    base = fhir.rstrip("/") + "/"
    if not _CLINICAL_USER.fullmatch(user[len(base):] if user.startswith(base) else user):
        log.warning("request_id=%s SMART launch refused: the user is not a practitioner",
                    _rid(request))
        resp = _page(request, 403, "Not allowed",
                     "This app is for clinicians: the EHR did not sign you in as a practitioner "
                     "(Practitioner or PractitionerRole), so no session was opened.")
        ident.clear_cookie(resp, ident.smart_cookie)
        return resp
    name = str(merged.get("name") or _fhir_user_name(fhir, user, access, timeout)
               or merged.get("preferred_username") or user)[:200]
    old = request.cookies.get(ident.session_cookie)
    if old:  # a new launch replaces the browser's previous session
        ident.sessions.delete(old)
    token = ident.sessions.create(kind="smart", subject=user, display_name=name,
                                  roles=SMART_ROLES, lifetime=ident.lifetime,
                                  context={"fhir_server": fhir, "patient": patient})
    who = Principal(kind="smart", subject=user, display_name=name, roles=SMART_ROLES)
    request.state.principal = who  # (the page below names the user)
    case, notice = _card_record(request, ident, tokens.get("appContext"), fhir, patient)
    if case is not None:  # launched from a CDS card: the record the card was made from
        resp = RedirectResponse(f"/cases/{case}", status_code=303)
    else:  # the patient's record, read with the launch's access token, through the FHIR reader
        req = {"context": {"patientId": patient}, "prefetch": {}, "fhirServer": fhir,
               "fhirAuthorization": {"access_token": access, "token_type": "Bearer"}}
        resp = _result(request, req, who.author, timeout, notice)
    ident.clear_cookie(resp, ident.smart_cookie)
    ident.set_cookie(resp, ident.session_cookie, token, int(ident.lifetime.total_seconds()))
    return resp


def _fhir_user_name(fhir: str, fhir_user: str, access_token: str, timeout: float) -> str:
    """The name on the ``fhirUser`` resource (Practitioner, PractitionerRole's practitioner is
    not followed), read from the launching FHIR server only; "" when it cannot be read."""
    base = fhir.rstrip("/") + "/"
    rel = fhir_user[len(base):] if fhir_user.startswith(base) else fhir_user
    if not re.fullmatch(r"(Practitioner|Patient|RelatedPerson|Person)/[A-Za-z0-9\-.]{1,64}", rel):
        return ""  # (an absolute URL on another server is never fetched)
    try:
        r = httpx.get(base + rel, timeout=timeout, follow_redirects=False,
                      headers={"Authorization": f"Bearer {access_token}",
                               "Accept": "application/fhir+json"})
        r.raise_for_status()
        res = r.json()
    except (httpx.HTTPError, ValueError):
        return ""
    names = res.get("name") if isinstance(res, dict) else None
    for n in names if isinstance(names, list) else []:
        if not isinstance(n, dict):
            continue
        if isinstance(n.get("text"), str) and n["text"].strip():
            return str(n["text"]).strip()
        parts = [p for p in (n.get("prefix") or []) + (n.get("given") or []) + [n.get("family")]
                 if isinstance(p, str) and p]
        if parts:
            return " ".join(parts)
    return ""


def _card_record(request: Request, ident: Identity, value: Any, fhir: str,
                 patient: str) -> tuple[str | None, str | None]:
    """(the audit id to open, None) when the launch came from a CDS card whose ``appContext``
    is bound to the launched patient and to a CDS client of the launching EHR
    (:mod:`.app_context`); (None, why not) when it cannot be opened; (None, None) without one."""
    from sarcoma_cds.interfaces.api.fhir_fetch import NotAllowed, parse_server

    try:
        ctx = app_context.parse(value)
        if ctx is None:
            return None, None
        if ident.secret is None:
            raise app_context.Refused("this server cannot check the card's context")
        app_context.verify(ctx, ident.secret, patient)
        access: Any = getattr(request.app.state, "access", None)
        client = access.verifier.clients.get(ctx.client) if access is not None else None
        try:
            launched = parse_server(fhir, allow_http=True)
        except NotAllowed:
            launched = None
        if client is None or launched is None or not any(
                p.covers(launched) for p in client.fhir_servers):
            raise app_context.Refused("the card was not served to the EHR that launched the app")
        services: Any = request.app.state.services
        rec = services.store.get_record(ctx.case)
        if rec is None or rec.get("interface") != "cds-hooks" or \
                rec.get("caller") != f"cds:{ctx.client}":
            raise app_context.Refused("the card's record was not made for the EHR that "
                                      "launched the app")
    except app_context.Refused as e:
        log.warning("request_id=%s SMART launch: the card's record not opened: %s",
                    _rid(request), e)
        return None, (f"The record of the card you opened is not shown: {e}. This patient's "
                      "record was read from the EHR afresh instead.")
    return ctx.case, None


def _result(request: Request, req: dict[str, Any], caller: str, timeout: float,
            notice: str | None = None) -> Response:
    """The result page for the launched patient (or a page saying why it cannot be shown)."""
    from sarcoma_cds.interfaces.api import cds_hooks, fhir_fetch
    from sarcoma_cds.interfaces.api.fhir_fetch import FhirPolicy, parse_server
    from sarcoma_cds.interfaces.web.forms import SECTIONS, form_values

    pages: Any = getattr(request.app.state, "web_pages", None)
    services: Any = getattr(request.app.state, "services", None)
    settings: Any = getattr(request.app.state, "settings", None)
    # the launching server was checked against SARCOMA_CDS_SMART_ISSUERS: it is the only one read,
    # with the same deadline and size cap as a CDS Hooks fetch (fhir_fetch)
    policy = FhirPolicy(servers=(parse_server(req["fhirServer"], allow_http=True),),
                        allow_http=True)
    try:
        fetched = anyio.from_thread.run(functools.partial(
            fhir_fetch.fetch_missing, req, cds_hooks.missing_prefetch(req), policy,
            deadline_s=getattr(settings, "fhir_deadline_s", 8.0), timeout_s=timeout,
            max_bytes=getattr(settings, "fhir_max_bytes", 10 * 1024 * 1024)))
        bundle, gaps = cds_hooks.gather_bundle(req, fetched)
    except (cds_hooks.PreconditionFailed, cds_hooks.BadHookRequest) as e:
        log.warning("request_id=%s SMART launch: the record could not be read: %s",
                    _rid(request), type(e).__name__)
        return _page(request, 502, "Record not readable",
                     "You are signed in, but the patient's record could not be read from the "
                     "EHR's FHIR server. Try the launch again.")
    answer = services.answer_bundle(bundle, "web", caller, request_id=_rid(request))
    imported = {"source": "SMART on FHIR launch (the EHR's record)", "notice": notice,
                "provenance": answer.provenance, "gaps": list(gaps) + list(answer.gaps)}
    if pages is None or answer.recommendation is None:
        problems = "; ".join(f"{f}: {m}" for f, m in (answer.problems or []))
        return _page(request, 422, "No recommendation",
                     "The record read from the EHR does not give the facts a recommendation "
                     f"needs{': ' + problems if problems else ''}. Use the patient form.")
    resp: Response = pages.render(
        request, "patient.html", sections=SECTIONS, fields=pages.fields,
        values=form_values(answer.facts), errors={}, imported=imported,
        **pages.result_context(answer.facts, answer.recommendation, answer.audit_id))
    return resp

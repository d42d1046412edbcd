"""Sign-in pages: ``/login`` (starts an OpenID Connect sign-in), ``/auth/callback`` (finishes
it and opens a session), ``/logout`` (POST: ends the session, then signs out at the provider
when it offers RP-initiated logout).

The session is a random token in an HttpOnly, SameSite=Lax cookie (Secure, with the
``__Host-`` prefix, when the public base URL is https); the ``web_sessions`` table keeps its
SHA-256, who it is, the roles, the expiry (``SARCOMA_CDS_SESSION_HOURS``) and, sealed with the
data keys, the ID token for the sign-out hint. A session idle for
``SARCOMA_CDS_SESSION_IDLE_MINUTES`` ends; each sign-in gives the user's other sessions the
roles the provider gives now.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from sarcoma_cds.interfaces.api.identity.errors import _page, safe_next
from sarcoma_cds.interfaces.api.identity.oidc import (
    STATE_MAX_AGE_S,
    OidcError,
    display_name,
    new_pending,
    same_state,
)
from sarcoma_cds.interfaces.api.identity.state import Identity, get_identity
from sarcoma_cds.store.crypto import DataKeyError

log = logging.getLogger("sarcoma_cds.service.identity")

router = APIRouter(include_in_schema=False)

CALLBACK = "/auth/callback"
FAILED = ("Sign-in did not succeed. Start again from the sign-in link; if it fails again, "
          "quote the time to the service's administrator.")


def _redirect_uri(ident: Identity, request: Request) -> str:
    base = ident.base_url or str(request.base_url).rstrip("/")
    return base + CALLBACK


def _rid(request: Request) -> str:
    return str(getattr(request.state, "request_id", "-"))


@router.get("/login")
def login(request: Request, next: str = "/") -> Response:
    """Start a sign-in at the OpenID provider (or say why there is none to start)."""
    ident = get_identity(request)
    target = safe_next(next)
    if ident.mode == "local":
        return _page(request, 200, "No sign-in needed",
                     "This server runs for a single local user (no sign-in and no API keys are "
                     "configured); it listens on this computer only.")
    if (ident.oidc is None or ident.state is None) and ident.smart is not None:
        return _page(request, 200, "Open this app from the EHR",
                     "This server signs users in through their EHR (SMART on FHIR launch): "
                     "open sarcoma-cds from the patient's chart.")
    if ident.oidc is None or ident.state is None:
        return _page(request, 403, "Sign-in is not configured",
                     "This server has API keys but no sign-in (SARCOMA_CDS_OIDC_ISSUER, "
                     "SARCOMA_CDS_OIDC_CLIENT_ID): its pages with patient data are closed.")
    pending, challenge = new_pending(target)
    try:
        url = ident.oidc.authorize_url(_redirect_uri(ident, request), pending.state,
                                       pending.nonce, challenge)
    except OidcError as e:
        log.warning("request_id=%s sign-in could not start: %s", _rid(request), e)
        return _page(request, 503, "Sign-in unavailable",
                     "The identity provider cannot be reached; try again in a moment.")
    resp = RedirectResponse(url, status_code=302)
    ident.set_cookie(resp, ident.state_cookie, ident.state.dump(pending), STATE_MAX_AGE_S)
    return resp


@router.get(CALLBACK)
def callback(request: Request, code: str = "", state: str = "", error: str = "",
             iss: str | None = None) -> Response:
    """Finish a sign-in: check the state, trade the code (PKCE), verify the ID token, admit
    the user and open a session."""
    ident = get_identity(request)
    if ident.oidc is None or ident.state is None or ident.sessions is None:
        return _page(request, 404, "Not found", "Sign-in is not configured on this server.")
    try:
        pending = ident.state.load(request.cookies.get(ident.state_cookie))
        if error:
            raise OidcError(f"the provider answered error={error[:60]!r}")
        if not code or not state or not same_state(state, pending.state):
            raise OidcError("state does not match the sign-in begun in this browser")
        if iss is not None and iss != ident.oidc.issuer:  # RFC 9207: a mix-up of providers
            raise OidcError("the authorization response names another issuer")
        tokens = ident.oidc.exchange(code, _redirect_uri(ident, request), pending.verifier)
        claims = ident.oidc.verify_id_token(tokens["id_token"], pending.nonce)
        access_token = tokens.get("access_token")
        info = ident.oidc.userinfo(access_token, str(claims["sub"])) if isinstance(
            access_token, str) else {}
    except OidcError as e:
        log.warning("request_id=%s sign-in refused: %s", _rid(request), e)
        resp = _page(request, 400, "Sign-in failed", FAILED, ("/login", "Sign in again"))
        ident.clear_cookie(resp, ident.state_cookie)
        return resp
    merged = {**info, **claims}  # (the ID token's own claims win)
    assert ident.policy is not None
    roles = ident.policy.admit(merged)
    # what the provider says now holds for every session of this user (roles removed there,
    # or the user removed from SARCOMA_CDS_OIDC_ALLOWED, are lost in their other browsers too)
    ident.sessions.reconcile("oidc", str(claims["sub"]), roles)
    if roles is None:
        log.warning("request_id=%s sign-in refused: user not on SARCOMA_CDS_OIDC_ALLOWED",
                    _rid(request))
        resp = _page(request, 403, "Not allowed",
                     f"You signed in as {display_name(merged)}, but this service does not "
                     "admit that account. Ask the service's administrator for access.")
        ident.clear_cookie(resp, ident.state_cookie)
        return resp
    old = request.cookies.get(ident.session_cookie)
    if old:  # a new sign-in replaces the browser's previous session (never two at once)
        ident.sessions.delete(old)
    # the ID token, sealed with the data keys, for the provider's sign-out (id_token_hint)
    cipher: Any = getattr(getattr(getattr(request.app.state, "services", None), "store", None),
                          "cipher", None)
    hint = cipher.seal_text(tokens["id_token"]) if cipher is not None else None
    token = ident.sessions.create(kind="oidc", subject=str(claims["sub"]),
                                  display_name=display_name(merged), roles=roles,
                                  lifetime=ident.lifetime,
                                  context={"id_token": hint} if hint else None)
    resp = RedirectResponse(safe_next(pending.next), status_code=303)
    ident.clear_cookie(resp, ident.state_cookie)
    ident.set_cookie(resp, ident.session_cookie, token, int(ident.lifetime.total_seconds()))
    return resp


@router.post("/logout")
def logout(request: Request) -> Response:
    """End the session (its row is deleted); then sign out at the OpenID provider too when it
    offers RP-initiated logout (``end_session_endpoint``), which sends the browser back to the
    home page; otherwise straight to the home page (local sign-out only)."""
    ident = get_identity(request)
    token = request.cookies.get(ident.session_cookie)
    row = ident.sessions.pop(token) if token and ident.sessions is not None else None
    target = "/"
    if row is not None and row.kind == "oidc" and ident.oidc is not None:
        sealed = (row.context or {}).get("id_token")
        cipher: Any = getattr(getattr(getattr(request.app.state, "services", None), "store",
                                      None), "cipher", None)
        try:
            hint = cipher.open_text(sealed) if cipher is not None and sealed else None
        except DataKeyError:  # (its data key was removed: sign out without the hint)
            hint = None
        base = ident.base_url or str(request.base_url).rstrip("/")
        target = ident.oidc.logout_url(hint, base + "/") or "/"
    resp = RedirectResponse(target, status_code=303)
    ident.clear_cookie(resp, ident.session_cookie)
    return resp

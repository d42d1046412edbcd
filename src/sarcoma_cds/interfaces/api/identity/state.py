"""The identity configuration of one app (``app.state.identity``) and the session cookie.

Three modes, decided once at start-up from the settings (docs/security/identity.md):

``local``
    no sign-in (OpenID Connect) and no API keys configured: the embedded default. ``serve``
    listens on 127.0.0.1 only and every web request is the single local user
    (:func:`~sarcoma_cds.interfaces.api.identity.principal.local_user`).
``keyed``
    API keys but no sign-in: the REST API takes keys; web pages with patient data are refused
    (403, "sign-in is not configured"), the guideline pages stay open.
``signin``
    sign-in with OpenID Connect and/or SMART on FHIR launch: web pages need a session
    (``web_sessions``), made at ``/auth/callback`` or ``/smart/callback``; the REST API takes
    keys (when configured) and is closed without them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from fastapi import Request, Response

from sarcoma_cds.interfaces.api.identity.oidc import (
    STATE_MAX_AGE_S,
    ConfigError,
    OidcClient,
    Policy,
    StateCookie,
)
from sarcoma_cds.interfaces.api.identity.principal import Principal, local_user
from sarcoma_cds.store.sessions import WebSessionStore

Mode = Literal["local", "keyed", "signin"]


@dataclass(frozen=True)
class Smart:
    """SMART on FHIR launch: the FHIR servers that may launch the app, and its client id."""

    issuers: frozenset[str]
    client_id: str


@dataclass
class Identity:
    """Who may use the web pages of this app, and how they sign in."""

    mode: Mode
    secure: bool = False  # the public base URL is https: Secure cookies with the __Host- prefix
    base_url: str | None = None
    oidc: OidcClient | None = None
    policy: Policy | None = None
    sessions: WebSessionStore | None = None
    state: StateCookie | None = None
    session_hours: float = 8.0
    local: Principal | None = None
    smart: Smart | None = None
    smart_state: StateCookie | None = None
    secret: bytes | None = None  # the server's secret (signs the CDS cards' SMART appContext)

    @property
    def signin(self) -> bool:
        """Sign-in is configured (the web pages can have signed-in users)."""
        return self.oidc is not None or self.smart is not None

    @property
    def session_cookie(self) -> str:
        return "__Host-sarcoma-session" if self.secure else "sarcoma-session"

    @property
    def state_cookie(self) -> str:
        return "__Host-sarcoma-signin" if self.secure else "sarcoma-signin"

    @property
    def smart_cookie(self) -> str:
        return "__Host-sarcoma-launch" if self.secure else "sarcoma-launch"

    @property
    def lifetime(self) -> timedelta:
        return timedelta(hours=self.session_hours)

    def set_cookie(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(name, value, max_age=max_age, path="/", secure=self.secure,
                            httponly=True, samesite="lax")

    def clear_cookie(self, response: Response, name: str) -> None:
        response.delete_cookie(name, path="/", secure=self.secure, httponly=True,
                               samesite="lax")

    def web_principal(self, request: Request) -> Principal | None:
        """The user of a web request: the local user, the session's user, or None (looked up
        once per request)."""
        cached = getattr(request.state, "principal", False)
        if cached is None or isinstance(cached, Principal):
            return cached
        p = self._lookup(request)
        request.state.principal = p
        return p

    def _lookup(self, request: Request) -> Principal | None:
        if self.mode == "local":
            if self.local is None:
                self.local = local_user()
            return self.local
        if self.sessions is None:
            return None
        token = request.cookies.get(self.session_cookie)
        row = self.sessions.get(token) if token else None
        if row is None:
            return None
        return Principal(kind="smart" if row.kind == "smart" else "oidc", subject=row.subject,
                         display_name=row.display_name, roles=frozenset(row.roles))


LOCAL = Identity(mode="local")


def build_identity(settings: object, *, keyed: bool, secret: bytes | None,
                   sessions: WebSessionStore | None) -> Identity:
    """The identity of an app from its settings (raises :class:`ConfigError` naming the
    variable when the sign-in settings are incomplete)."""
    get = settings.__getattribute__
    issuer = getattr(settings, "oidc_issuer", None)
    client_id = getattr(settings, "oidc_client_id", None)
    smart_issuers = str(getattr(settings, "smart_issuers", "") or "")
    smart_client = getattr(settings, "smart_client_id", None)
    base_url = getattr(settings, "base_url", None)
    secure = bool(base_url and str(base_url).startswith("https://"))
    hours = float(getattr(settings, "session_hours", 8.0) or 8.0)
    if hours <= 0:
        raise ConfigError("SARCOMA_CDS_SESSION_HOURS must be a positive number of hours")
    oidc_on = bool(issuer or client_id)
    smart_on = bool(smart_issuers or smart_client)
    idle = float(getattr(settings, "session_idle_minutes", 60.0) or 0)
    if (oidc_on or smart_on) and idle <= 0:
        raise ConfigError("SARCOMA_CDS_SESSION_IDLE_MINUTES must be a positive number of minutes")
    if not oidc_on and not smart_on:
        return Identity(mode="keyed" if keyed else "local", secure=secure, base_url=base_url)
    if secret is None or sessions is None:
        raise ConfigError("sign-in needs the service's store and secret key")
    ident = Identity(mode="signin", secure=secure, base_url=base_url, sessions=sessions,
                     session_hours=hours, secret=secret)
    timeout = float(getattr(settings, "fhir_timeout_s", 5.0) or 5.0)
    if oidc_on:
        if not issuer or not client_id:
            raise ConfigError("sign-in needs both SARCOMA_CDS_OIDC_ISSUER and "
                              "SARCOMA_CDS_OIDC_CLIENT_ID")
        if not _https_or_loopback(str(issuer)):
            raise ConfigError("SARCOMA_CDS_OIDC_ISSUER must be an https URL")
        ident.policy = Policy.parse(get("oidc_allowed"), get("oidc_roles"),
                                    get("oidc_roles_claim"))
        ident.oidc = OidcClient(issuer=str(issuer), client_id=str(client_id),
                                client_secret=getattr(settings, "oidc_client_secret", None)
                                or None, timeout_s=timeout)
        ident.state = StateCookie(secret)
    if smart_on:
        names = frozenset(x.strip().rstrip("/") for x in smart_issuers.split(",") if x.strip())
        if not names or not smart_client:
            raise ConfigError("SMART launch needs both SARCOMA_CDS_SMART_ISSUERS and "
                              "SARCOMA_CDS_SMART_CLIENT_ID")
        bad = sorted(n for n in names if not _https_or_loopback(n))
        if bad:
            raise ConfigError(f"SARCOMA_CDS_SMART_ISSUERS: {bad[0]} is not an https URL")
        ident.smart = Smart(issuers=names, client_id=str(smart_client))
        ident.smart_state = StateCookie(secret, "smart")
    return ident


def _https_or_loopback(url: str) -> bool:
    return url.startswith(("https://", "http://127.0.0.1:", "http://127.0.0.1/",
                           "http://localhost:", "http://localhost/"))


def get_identity(request: Request) -> Identity:
    """The identity of the app serving this request (local when none was configured: the
    stand-alone web app of ``create_web_app``)."""
    ident = getattr(request.app.state, "identity", None)
    return ident if isinstance(ident, Identity) else LOCAL


__all__ = ["LOCAL", "STATE_MAX_AGE_S", "Identity", "build_identity", "get_identity"]

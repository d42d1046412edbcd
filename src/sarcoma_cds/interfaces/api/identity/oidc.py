"""OpenID Connect sign-in: authorization code flow with PKCE (S256), for any standard provider.

Built on httpx (discovery, token and userinfo requests) and PyJWT (ID token signature from the
provider's JWKS, ``iss``, ``aud``, ``exp``, ``iat``; the ``nonce`` compared here). The state,
nonce and PKCE verifier of a sign-in in progress live in a short-lived cookie signed with the
server's secret (itsdangerous), so any worker or replica can finish a sign-in another began.

Every failure raises :class:`OidcError`, whose text is for the log only (it never holds a
token); the user is told that sign-in failed and may try again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
from itsdangerous import BadSignature, URLSafeTimedSerializer

from sarcoma_cds.interfaces.api.identity.roles import VIEWER, UnknownRole, expand, parse_roles

#: Algorithms an ID token may be signed with (asymmetric only: never ``none`` or HMAC).
ID_TOKEN_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
                 "ES512", "EdDSA")
STATE_MAX_AGE_S = 600  # a sign-in must finish within ten minutes
METADATA_TTL_S = 3600.0
#: After a failed discovery, sign-in starts are refused from memory for this many seconds
#: (``/login`` is public: a flood must neither hammer the provider nor hold worker threads).
METADATA_RETRY_S = 10.0
LEEWAY_S = 30
SCOPES = "openid profile email"


class OidcError(Exception):
    """Sign-in refused; ``str(e)`` is the reason, for the log only."""


class ConfigError(ValueError):
    """The sign-in settings are unusable; the message names the variable."""


def pkce_pair() -> tuple[str, str]:
    """A PKCE code verifier and its S256 challenge (RFC 7636)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class Policy:
    """Who may sign in and which roles they get.

    ``allowed``: subjects, emails, user names or group names (``*``: anyone the provider
    signs in). ``role_map``: group (claim value) -> roles. Every allowed user is a viewer.
    """

    allowed: frozenset[str]
    role_map: Mapping[str, frozenset[str]]
    roles_claim: str = "groups"

    @classmethod
    def parse(cls, allowed: str, roles: str, roles_claim: str = "groups") -> Policy:
        names = frozenset(x.strip() for x in allowed.replace(";", ",").split(",") if x.strip())
        if not names:
            raise ConfigError("SARCOMA_CDS_OIDC_ALLOWED is empty: list the users, emails or "
                              "groups who may sign in (or * for everyone the provider signs in)")
        role_map: dict[str, set[str]] = {}
        for part in (p.strip() for p in roles.split(";")):
            if not part:
                continue
            role, eq, groups = part.partition("=")
            if not eq or not groups.strip():
                raise ConfigError(f"SARCOMA_CDS_OIDC_ROLES: {part!r}: expected "
                                  "role=group[,group...]")
            try:
                granted = parse_roles(role, "SARCOMA_CDS_OIDC_ROLES")
            except UnknownRole as e:
                raise ConfigError(str(e)) from None
            for g in (x.strip() for x in groups.split(",")):
                if g:
                    role_map.setdefault(g, set()).update(granted)
        return cls(allowed=names, role_map={g: frozenset(r) for g, r in role_map.items()},
                   roles_claim=roles_claim or "groups")

    def groups(self, claims: Mapping[str, Any]) -> list[str]:
        v = claims.get(self.roles_claim)
        if isinstance(v, str):
            return [v]
        if isinstance(v, list):
            return [x for x in v if isinstance(x, str)]
        return []

    def admit(self, claims: Mapping[str, Any]) -> frozenset[str] | None:
        """The roles of the user these claims describe, or None when the user is not allowed.

        An entry of ``SARCOMA_CDS_OIDC_ALLOWED`` may be typed (``sub:``, ``email:``, ``group:``,
        ``user:``); an untyped entry matches the subject, a verified e-mail or a group, never the
        user name: ``preferred_username`` is chosen by the user and not unique (OpenID Connect
        Core 5.1), so an account named like an allowed group must not get in. ``user:<name>``
        admits by user name for providers whose user names are assigned and unique."""
        typed: set[str] = set()
        sub = str(claims.get("sub") or "")
        if sub:
            typed |= {sub, "sub:" + sub}
        email = claims.get("email")
        # an e-mail admits only when the provider says it was verified: several omit
        # email_verified for addresses a user typed in ("nOAuth")
        if isinstance(email, str) and email and claims.get("email_verified") is True:
            typed |= {email, "email:" + email}
        user = claims.get("preferred_username")
        if isinstance(user, str) and user:
            typed.add("user:" + user)
        groups = self.groups(claims)
        typed |= set(groups) | {"group:" + g for g in groups}
        if "*" not in self.allowed and not (self.allowed & typed):
            return None
        roles: set[str] = {VIEWER}
        for g in groups:
            roles |= self.role_map.get(g, frozenset())
        return expand(roles)


def display_name(claims: Mapping[str, Any]) -> str:
    for k in ("name", "preferred_username", "email", "sub"):
        v = claims.get(k)
        if isinstance(v, str) and v.strip():
            return v.strip()[:200]
    return "signed-in user"


@dataclass
class OidcClient:
    """One OpenID provider, found by discovery from its issuer URL."""

    issuer: str
    client_id: str
    client_secret: str | None = None
    timeout_s: float = 5.0
    _meta: dict[str, Any] | None = None
    _meta_at: float = 0.0
    _meta_failed_at: float = 0.0
    _jwks: jwt.PyJWKSet | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_metadata(cls, meta: dict[str, Any], client_id: str,
                      timeout_s: float = 5.0) -> OidcClient:
        """A client of an authorization server whose metadata is already known (a SMART
        on FHIR server's ``.well-known/smart-configuration``)."""
        c = cls(issuer=str(meta.get("issuer") or ""), client_id=client_id, timeout_s=timeout_s)
        c._meta, c._meta_at = meta, time.monotonic()
        return c

    def metadata(self) -> dict[str, Any]:
        """The provider's ``.well-known/openid-configuration`` (cached for an hour)."""
        with self._lock:
            if self._meta is not None and time.monotonic() - self._meta_at < METADATA_TTL_S:
                return self._meta
            if (self._meta_failed_at
                    and time.monotonic() - self._meta_failed_at < METADATA_RETRY_S):
                raise OidcError("discovery at the issuer failed a moment ago")
            try:
                meta = self._discover()
            except OidcError:
                self._meta_failed_at = time.monotonic()
                raise
            self._meta, self._meta_at, self._meta_failed_at = meta, time.monotonic(), 0.0
            return meta

    def _discover(self) -> dict[str, Any]:
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            r = httpx.get(url, timeout=self.timeout_s)
            r.raise_for_status()
            meta = r.json()
        except (httpx.HTTPError, ValueError) as e:
            raise OidcError(f"discovery at the issuer failed: {type(e).__name__}") from None
        if not isinstance(meta, dict) or meta.get("issuer") != self.issuer:
            raise OidcError("the discovery document names another issuer")
        for k in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(meta.get(k), str):
                raise OidcError(f"the discovery document has no {k}")
        return meta

    def authorize_url(self, redirect_uri: str, state: str, nonce: str, challenge: str) -> str:
        meta = self.metadata()
        query = urlencode({
            "response_type": "code", "client_id": self.client_id, "redirect_uri": redirect_uri,
            "scope": SCOPES, "state": state, "nonce": nonce, "code_challenge": challenge,
            "code_challenge_method": "S256",
        })
        sep = "&" if "?" in meta["authorization_endpoint"] else "?"
        return f"{meta['authorization_endpoint']}{sep}{query}"

    def logout_url(self, id_token: str | None, post_logout_redirect_uri: str) -> str | None:
        """The provider's RP-initiated logout URL (OpenID Connect RP-Initiated Logout 1.0:
        ``end_session_endpoint`` from discovery, with ``id_token_hint``, ``client_id`` and
        ``post_logout_redirect_uri``); None when the provider offers none or cannot be
        reached (then the sign-out is local only)."""
        try:
            endpoint = self.metadata().get("end_session_endpoint")
        except OidcError:
            return None
        if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
            return None
        query = {"client_id": self.client_id,
                 "post_logout_redirect_uri": post_logout_redirect_uri}
        if id_token:
            query["id_token_hint"] = id_token
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(query)}"

    def exchange(self, code: str, redirect_uri: str, verifier: str) -> dict[str, Any]:
        """Trade the authorization code (with the PKCE verifier) for tokens."""
        meta = self.metadata()
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "code_verifier": verifier, "client_id": self.client_id}
        auth: tuple[str, str] | None = None
        if self.client_secret:
            methods = meta.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
            if "client_secret_basic" in methods:
                auth = (self.client_id, self.client_secret)
            else:
                data["client_secret"] = self.client_secret
        try:
            r = httpx.post(meta["token_endpoint"], data=data, auth=auth, timeout=self.timeout_s,
                           headers={"Accept": "application/json"})
        except httpx.HTTPError as e:
            raise OidcError(f"token endpoint unreachable: {type(e).__name__}") from None
        try:
            body = r.json()
        except ValueError:
            body = {}
        if r.status_code != 200 or not isinstance(body, dict):
            err = body.get("error") if isinstance(body, dict) else None
            raise OidcError(f"token endpoint refused the code ({r.status_code} {err})")
        if not isinstance(body.get("id_token"), str):
            raise OidcError("the token response has no id_token")
        return body

    def _keys(self, force: bool) -> jwt.PyJWKSet:
        with self._lock:
            if self._jwks is not None and not force:
                return self._jwks
        meta = self.metadata()
        try:
            r = httpx.get(meta["jwks_uri"], timeout=self.timeout_s)
            r.raise_for_status()
            keys = jwt.PyJWKSet.from_dict(r.json())
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as e:
            raise OidcError(f"JWKS not fetchable: {type(e).__name__}") from None
        with self._lock:
            self._jwks = keys
        return keys

    def _key(self, kid: str | None, alg: str) -> Any:
        for force in (False, True):  # a new key id: fetch the provider's keys again, once
            keys = [k for k in self._keys(force).keys
                    if (kid is None or k.key_id == kid) and k.key_type != "oct"]
            for k in keys:
                if k.algorithm_name in (alg, None) or kid is not None:
                    return k.key
        raise OidcError(f"no provider key matches kid {kid!r}")

    def verify_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        """The ID token's claims once its signature, issuer, audience, lifetime and nonce hold."""
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError as e:
            raise OidcError(f"malformed ID token: {type(e).__name__}") from None
        alg = header.get("alg")
        if alg not in ID_TOKEN_ALGS:
            raise OidcError(f"ID token algorithm {alg!r} refused")
        key = self._key(header.get("kid"), str(alg))
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token, key=key, algorithms=[str(alg)], audience=self.client_id,
                issuer=self.issuer, leeway=LEEWAY_S,
                options={"require": ["iss", "aud", "exp", "iat", "sub"]})
        except jwt.PyJWTError as e:
            raise OidcError(f"ID token refused: {type(e).__name__}") from None
        aud = claims.get("aud")
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != self.client_id:
            raise OidcError("ID token for several audiences without azp naming this client")
        got = claims.get("nonce")
        if not isinstance(got, str) or not hmac.compare_digest(got, nonce):
            raise OidcError("ID token nonce does not match the sign-in")
        return claims

    def userinfo(self, access_token: str, sub: str) -> dict[str, Any]:
        """The userinfo claims (groups often come only from there); {} without an endpoint."""
        url = self.metadata().get("userinfo_endpoint")
        if not isinstance(url, str) or not access_token:
            return {}
        try:
            r = httpx.get(url, headers={"Authorization": f"Bearer {access_token}",
                                        "Accept": "application/json"}, timeout=self.timeout_s)
            r.raise_for_status()
            info = r.json()
        except (httpx.HTTPError, ValueError) as e:
            raise OidcError(f"userinfo failed: {type(e).__name__}") from None
        if not isinstance(info, dict) or info.get("sub") != sub:
            raise OidcError("userinfo is about another subject")
        return info


# ------------------------------------------------------------------ the sign-in in progress

@dataclass(frozen=True)
class Pending:
    """A sign-in begun by this browser: what the callback must find again."""

    state: str
    nonce: str
    verifier: str
    next: str


class StateCookie:
    """The pending sign-in, signed with the server's secret, valid for ten minutes."""

    def __init__(self, secret: bytes, purpose: str = "oidc") -> None:
        self._s = URLSafeTimedSerializer(secret, salt=f"sarcoma-cds.{purpose}-state")

    def dump(self, p: Pending) -> str:
        return self._s.dumps({"s": p.state, "n": p.nonce, "v": p.verifier, "x": p.next})

    def load(self, value: str | None) -> Pending:
        if not value:
            raise OidcError("no sign-in in progress in this browser (state cookie missing)")
        try:
            d = self._s.loads(value, max_age=STATE_MAX_AGE_S)
        except BadSignature:  # (SignatureExpired is a BadSignature)
            raise OidcError("state cookie invalid or expired") from None
        if not isinstance(d, dict) or not all(isinstance(d.get(k), str) for k in "snvx"):
            raise OidcError("state cookie malformed")
        return Pending(state=d["s"], nonce=d["n"], verifier=d["v"], next=d["x"])


def new_pending(next_url: str) -> tuple[Pending, str]:
    """A new pending sign-in and its PKCE challenge."""
    verifier, challenge = pkce_pair()
    return Pending(state=secrets.token_urlsafe(24), nonce=secrets.token_urlsafe(24),
                   verifier=verifier, next=next_url), challenge


def same_state(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())

"""Access control: hashed API keys for the REST API; JWT verification for CDS Hooks clients.

CDS Hooks 2.0.1 security: the client's JWT is verified against the JWK Set
configured for its issuer; only asymmetric algorithms are accepted (``none`` and
HMAC are refused), ``aud`` must equal the exact URL called, ``exp``/``iat``/``jti``
are required and a ``jti`` is accepted once (until it expires). The reason for a
refusal goes to the log (never with patient data), not to the caller.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import jwt
from jwt import PyJWK

from sarcoma_cds.interfaces.api.fhir_fetch import FhirPolicy, NotAllowed, ServerPrefix, parse_server

log = logging.getLogger("sarcoma_cds.service.security")

ALLOWED_ALGS = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512",
                          "PS256", "PS384", "PS512", "EdDSA"})
DEV_ISSUER = "sarcoma-cds-dev"
LEEWAY_S = 30
MAX_TOKEN_AGE_S = 3600


class AuthError(Exception):
    """A token was refused; ``str(e)`` is the reason (for the log only)."""


# --------------------------------------------------------------------- API keys

def _key_lines(path: Path) -> list[tuple[str, str, str | None]]:
    """The ``(digest, name, roles or None)`` of each key line of the key file.

    A line is ``<sha256 hex> [name] [roles=role,role]`` (``#`` comments): the name is every
    word but the ``roles=`` one, so ``<sha256> ward`` (before issue 12) still reads the same.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:  # fail closed: never an open API by accident
        raise ValueError(
            f"{path}: the API key file cannot be read ({e.__class__.__name__})"
        ) from None
    out: list[tuple[str, str, str | None]] = []
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        digest, _, rest = line.partition(" ")
        digest = digest.strip().lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"{path}: line {n}: expected a SHA-256 hex digest")
        words = rest.split()
        roles = [w[len("roles="):] for w in words if w.lower().startswith("roles=")]
        if len(roles) > 1:
            raise ValueError(f"{path}: line {n}: roles= is given more than once")
        name = " ".join(w for w in words if not w.lower().startswith("roles="))
        out.append((digest, name or f"key-{digest[:8]}", roles[0] if roles else None))
    if not out:  # a configured but empty file must not open the API (issue 12: fail closed)
        raise ValueError(f"{path}: the API key file lists no key; refusing to run with an open API")
    return out


def load_api_keys(path: Path | None) -> dict[str, str]:
    """Read ``<sha256 hex> [name] [roles=...]`` lines (``#`` comments). Returns {hash: name}."""
    if path is None:
        return {}
    return {digest: name for digest, name, _ in _key_lines(path)}


def load_api_key_roles(path: Path | None) -> dict[str, frozenset[str]]:
    """{key name: roles} of the keys listed with ``roles=`` (a key without them keeps what a
    key could do before roles existed: the REST API and the audit trail). An unknown role, or
    one name given two different role lists, raises ValueError naming the file."""
    from sarcoma_cds.interfaces.api.identity.roles import UnknownRole, parse_roles

    if path is None:
        return {}
    from sarcoma_cds.interfaces.api.identity.principal import LEGACY_KEY_ROLES

    out: dict[str, frozenset[str]] = {}
    seen: dict[str, frozenset[str]] = {}  # every line's roles, a line without them: legacy
    for _, name, roles in _key_lines(path):
        try:
            parsed = (LEGACY_KEY_ROLES if roles is None
                      else parse_roles(roles, f"{path}: key {name!r}"))
        except UnknownRole as e:
            raise ValueError(str(e)) from None
        # roles go by name: a line without roles= sharing a name with a roles= line would get
        # that line's roles (an admin's, say), so any difference stops the start
        if seen.get(name, parsed) != parsed:
            raise ValueError(f"{path}: key {name!r} is listed twice with different roles")
        seen[name] = parsed
        if roles is not None:
            out[name] = parsed
    return out


def check_api_key(keys: dict[str, str], authorization: str | None) -> str | None:
    """The key's name when the bearer key is listed, else None (constant-time compare)."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    digest = hashlib.sha256(token.strip().encode()).hexdigest()
    found = None
    for h, name in keys.items():
        if hmac.compare_digest(h, digest):
            found = name
    return found


# --------------------------------------------------------------------- JWT

#: The roles a CDS client may hold: ``viewer`` (call the hooks: compute a recommendation from
#: the patient's record) and ``clinician`` (also send feedback: the clinician's accepted or
#: overridden outcome of a card). The audit trail is never open to a CDS client's token.
CDS_ROLES = ("viewer", "clinician")
#: A clients-file entry without ``roles``: what a CDS client could do before roles existed.
CDS_DEFAULT_ROLES = frozenset(CDS_ROLES)


@dataclass
class Client:
    """A trusted CDS Hooks client: its issuer, its keys (a JWK Set or the URL of one) and the
    FHIR servers the service may read on its behalf (``fhir_servers``; ``fhir_without_token``
    allows a fetch without a ``fhirAuthorization`` access token)."""

    iss: str
    jwks: dict[str, Any] | None = None
    jwks_url: str | None = None
    fetched_at: float = 0.0
    fhir_servers: tuple[ServerPrefix, ...] = ()
    fhir_without_token: bool = False
    roles: frozenset[str] = field(default_factory=lambda: CDS_DEFAULT_ROLES)
    roles_listed: bool = False  # (the clients file gave ``roles``)
    #: keys built from ``jwks`` (``_pick``), valid while ``jwks`` is the same object; only keys
    #: found are kept (bounded by the JWK Set: forged kids add nothing)
    _built: dict[tuple[str | None, str], PyJWK] = field(default_factory=dict, repr=False)
    _built_from: dict[str, Any] | None = field(default=None, repr=False)

    def fhir_policy(self, allow_http: bool) -> FhirPolicy:
        """What the service may read on this client's behalf."""
        return FhirPolicy(self.fhir_servers, self.fhir_without_token, allow_http)


def _fhir_servers(path: Path, i: int, c: dict[str, Any],
                  allow_http: bool) -> tuple[ServerPrefix, ...]:
    raw = c.get("fhir_servers", [])
    if not isinstance(raw, list) or not all(isinstance(u, str) for u in raw):
        raise ValueError(f"{path}: clients[{i}]: 'fhir_servers' must be a list of URLs")
    out = []
    for u in raw:
        try:
            out.append(parse_server(u, allow_http=allow_http))
        except NotAllowed as e:
            need = "" if allow_http else " (https only outside development mode)"
            raise ValueError(f"{path}: clients[{i}]: fhir_servers: {u!r}: {e}{need}") from None
    if not isinstance(c.get("fhir_without_token", False), bool):
        raise ValueError(f"{path}: clients[{i}]: 'fhir_without_token' must be true or false")
    return tuple(out)


def _client_roles(path: Path, i: int, c: dict[str, Any]) -> frozenset[str] | None:
    """The ``roles`` of a clients-file entry (expanded), None when absent. A role a CDS client
    cannot hold (``auditor``, ``admin``) or an unknown one stops the start, naming the entry."""
    from sarcoma_cds.interfaces.api.identity.roles import UnknownRole, expand, parse_roles

    if "roles" not in c:
        return None
    raw = c["roles"]
    if not isinstance(raw, list) or not all(isinstance(r, str) for r in raw):
        raise ValueError(f"{path}: clients[{i}]: 'roles' must be a list of role names "
                         f"({', '.join(CDS_ROLES)})")
    try:
        parsed = parse_roles(",".join(raw), f"{path}: clients[{i}]: roles")
    except UnknownRole as e:
        raise ValueError(str(e)) from None
    wrong = sorted(r for r in {x.strip().lower() for x in raw} if r and r not in CDS_ROLES)
    if wrong:
        raise ValueError(f"{path}: clients[{i}]: roles: a CDS client cannot hold {wrong[0]!r} "
                         f"(only {', '.join(CDS_ROLES)}: a CDS client never reads the audit "
                         "trail)")
    return expand(parsed)


#: ``remember_jti(iss, jti, expires_at)``: True the first time a token id is seen, False on a
#: replay (``AuditStore.remember_jti``).
RememberJti = Callable[[str, str, datetime], bool]

#: Largest JWK Set read from a ``jwks_url`` (bytes; read as a stream and dropped past it).
MAX_JWKS_BYTES = 256 * 1024


def _number(claims: dict[str, Any], name: str) -> float | None:
    """A NumericDate claim as a number; a string, a boolean or anything else is refused."""
    v = claims.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise AuthError(f"{name} is not a number")
    return float(v)


@dataclass
class JwtVerifier:
    """Verifies CDS clients' JWTs. Asynchronous: a JWK Set download never blocks the event loop
    nor a worker thread, one download per client is shared by every request waiting for it, and
    a client's keys are downloaded at most once per ``jwks_refetch_interval_s`` however many
    unknown key ids forged tokens name (issue 12, denial of service); after a failed download,
    once per ``jwks_retry_after_failure_s``. Keys are re-read every
    ``jwks_ttl_s`` in the background while the cached ones keep serving."""

    clients: dict[str, Client]
    remember_jti: RememberJti
    jwks_ttl_s: float = 300.0
    http_timeout_s: float = 5.0
    jwks_refetch_interval_s: float = 60.0
    jwks_retry_after_failure_s: float = 10.0
    _tried_at: dict[str, float] = field(default_factory=dict)
    _inflight: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _fetches: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_file(cls, path: Path | None, remember_jti: RememberJti,
                  extra: list[Client] | None = None, *, allow_http: bool = False) -> JwtVerifier:
        """The clients of a clients file (and ``extra`` ones, e.g. the dev-mode client, which
        takes the ``fhir_servers`` of a file entry with its issuer). ``allow_http``: development
        mode, where ``fhir_servers`` may be plain ``http``."""
        clients: dict[str, Client] = {}
        if path is not None:
            data = json.loads(path.read_text(encoding="utf-8"))
            for i, c in enumerate(data.get("clients", [])):
                iss = c.get("iss")
                if not isinstance(iss, str) or not iss:
                    raise ValueError(f"{path}: clients[{i}]: 'iss' is required")
                if not (c.get("jwks_url") or c.get("jwks")) and iss != DEV_ISSUER:
                    raise ValueError(f"{path}: clients[{i}]: give 'jwks_url' or 'jwks'")
                roles = _client_roles(path, i, c)
                clients[iss] = Client(iss=iss, jwks=c.get("jwks"), jwks_url=c.get("jwks_url"),
                                      fhir_servers=_fhir_servers(path, i, c, allow_http),
                                      fhir_without_token=c.get("fhir_without_token") is True,
                                      roles=CDS_DEFAULT_ROLES if roles is None else roles,
                                      roles_listed=roles is not None)
        for c in extra or []:
            listed = clients.get(c.iss)
            if listed is not None and not c.fhir_servers:
                c.fhir_servers = listed.fhir_servers
                c.fhir_without_token = listed.fhir_without_token
            if listed is not None and listed.roles_listed and not c.roles_listed:
                c.roles, c.roles_listed = listed.roles, True
            clients[c.iss] = c
        if DEV_ISSUER in clients and not (clients[DEV_ISSUER].jwks or
                                          clients[DEV_ISSUER].jwks_url):
            del clients[DEV_ISSUER]  # an allow-list for the dev client, without dev mode
        return cls(clients=clients, remember_jti=remember_jti)

    # ------------------------------------------------------------------ keys
    async def _download(self, client: Client) -> None:
        assert client.jwks_url
        self._fetches[client.iss] = self._fetches.get(client.iss, 0) + 1
        try:
            async with httpx.AsyncClient(timeout=self.http_timeout_s,
                                         follow_redirects=False) as http, \
                    http.stream("GET", client.jwks_url,
                                headers={"Accept": "application/json"}) as r:
                r.raise_for_status()
                buf = bytearray()
                async for chunk in r.aiter_bytes():
                    buf += chunk
                    if len(buf) > MAX_JWKS_BYTES:
                        raise ValueError("JWK Set too large")
            data = json.loads(bytes(buf))
            if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
                raise ValueError("not a JWK Set")
            client.jwks = data
            client.fetched_at = time.monotonic()
        except (httpx.HTTPError, ValueError) as e:
            log.warning("JWKS of %s not fetchable: %s", client.iss, type(e).__name__)
            # a failed download may be retried sooner than a successful one is repeated
            retry = min(self.jwks_retry_after_failure_s, self.jwks_refetch_interval_s)
            self._tried_at[client.iss] = time.monotonic() - self.jwks_refetch_interval_s + retry

    def _live(self, client: Client) -> asyncio.Task[None] | None:
        """The download of this client's keys running on this event loop, if any."""
        task = self._inflight.get(client.iss)
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            return None
        return task

    async def _refetch(self, client: Client) -> None:
        """Download the client's keys, unless a download is running (then wait for it) or one
        started less than ``jwks_refetch_interval_s`` ago (then use what is cached)."""
        running = self._live(client)
        if running is not None:
            await asyncio.shield(running)
            return
        now = time.monotonic()
        last = self._tried_at.get(client.iss)
        if last is not None and now - last < self.jwks_refetch_interval_s:
            return
        self._tried_at[client.iss] = now
        task = asyncio.ensure_future(self._download(client))
        self._inflight[client.iss] = task
        await asyncio.shield(task)

    def _refresh_later(self, client: Client) -> None:
        """Re-read stale keys in the background (the cached ones keep serving meanwhile)."""
        running = self._live(client)
        last = self._tried_at.get(client.iss)
        if running is not None or (
                last is not None and time.monotonic() - last < self.jwks_refetch_interval_s):
            return
        self._tried_at[client.iss] = time.monotonic()
        self._inflight[client.iss] = asyncio.ensure_future(self._download(client))

    async def _key(self, client: Client, kid: str | None, alg: str) -> PyJWK | None:
        if not client.jwks_url:
            return _pick(client, kid, alg)
        if client.jwks is None:
            await self._refetch(client)
            return _pick(client, kid, alg)
        key = _pick(client, kid, alg)
        if key is None:  # an unknown kid: perhaps rotated keys (at most one download per interval)
            await self._refetch(client)
            return _pick(client, kid, alg)
        if time.monotonic() - client.fetched_at > self.jwks_ttl_s:
            self._refresh_later(client)
        return key

    def jwks_downloads(self, iss: str) -> int:
        """How many times the keys of ``iss`` were downloaded (for the operators and tests)."""
        return self._fetches.get(iss, 0)

    # ------------------------------------------------------------------ tokens
    async def verify(self, authorization: str | None, audience: str, *,
                     replay_check: bool = True) -> dict[str, Any]:
        """Claims of a valid token, or raise :class:`AuthError` with the reason. The key lookup
        awaits (never blocks); the signature check and the replay store run in a worker thread.

        ``replay_check=False``: everything but the ``jti`` replay store, which the caller must
        then do itself with :func:`replay_key` before it answers (the CDS Hooks service call
        stores the token id with its audit row, in one group commit: issue 13)."""
        if not authorization:
            raise AuthError("no Authorization header")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("Authorization is not a Bearer token")
        token = token.strip()
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as e:
            raise AuthError(f"malformed token: {type(e).__name__}") from None
        alg = header.get("alg")
        if alg not in ALLOWED_ALGS:
            raise AuthError(f"algorithm {alg!r} refused (asymmetric algorithms only)")
        iss = unverified.get("iss")
        client = self.clients.get(iss) if isinstance(iss, str) else None
        if client is None:
            raise AuthError(f"issuer {iss!r} is not on the allow-list")
        kid = header.get("kid")
        key = await self._key(client, kid if isinstance(kid, str) else None, alg)
        if key is None:
            raise AuthError(f"no key of {iss} matches kid {kid!r}")
        return await anyio.to_thread.run_sync(self._check, token, key, alg, audience, client,
                                              replay_check)

    def _check(self, token: str, key: PyJWK, alg: str, audience: str,
               client: Client, replay_check: bool = True) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key=key.key, algorithms=[alg], audience=audience, issuer=client.iss,
                options={"require": ["iss", "aud", "exp", "iat", "jti"]}, leeway=LEEWAY_S,
            )
        except jwt.InvalidAudienceError:
            raise AuthError(f"audience does not match {audience}") from None
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.PyJWTError as e:
            raise AuthError(f"token refused: {type(e).__name__}: {e}") from None
        exp, iat = _number(claims, "exp"), _number(claims, "iat")
        _number(claims, "nbf")
        if exp is None or iat is None:
            raise AuthError("exp and iat are required")
        if iat > time.time() + LEEWAY_S:
            raise AuthError("iat is in the future")
        if exp - iat > MAX_TOKEN_AGE_S + LEEWAY_S:
            raise AuthError("token lifetime longer than allowed")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise AuthError("jti missing")
        if replay_check and not self.remember_jti(*replay_key(claims)):
            raise AuthError("jti replayed")
        return claims


def replay_key(claims: dict[str, Any]) -> tuple[str, str, datetime]:
    """``(iss, jti, expires_at)`` of verified claims: what the replay store keeps (until the
    token has expired, leeway included)."""
    return str(claims["iss"]), str(claims["jti"]), datetime.fromtimestamp(
        float(claims["exp"]) + LEEWAY_S, UTC)


def _pick(client: Client, kid: str | None, alg: str) -> PyJWK | None:
    """The client's cached key for ``kid`` usable with ``alg`` (never a symmetric key), built
    once per JWK Set (a new download starts afresh)."""
    if client._built_from is not client.jwks:
        client._built, client._built_from = {}, client.jwks
    key = client._built.get((kid, alg))
    if key is None:
        key = _build_key(client, kid, alg)
        if key is not None:
            client._built[(kid, alg)] = key
    return key


def _build_key(client: Client, kid: str | None, alg: str) -> PyJWK | None:
    keys = [k for k in (client.jwks or {}).get("keys", []) if isinstance(k, dict)]
    cands = [k for k in keys if kid is None or k.get("kid") == kid]
    if kid is None and len(cands) > 1:
        cands = [k for k in cands if k.get("alg") in (None, alg)]
    for k in cands:
        if k.get("kty") == "oct":
            continue  # symmetric keys are never trusted
        try:
            return PyJWK(k, algorithm=alg)
        except jwt.PyJWTError:
            continue
    return None


# --------------------------------------------------------------------- dev mode

def dev_client(data_dir: Path) -> tuple[Client, Path]:
    """Development only: a local ES384 key pair (created once under the data dir), trusted as
    issuer ``sarcoma-cds-dev``. Returns the client and the private key path."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    data_dir.mkdir(parents=True, exist_ok=True)
    key_path = data_dir / "dev-client-key.pem"
    if key_path.exists():
        private = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    else:
        private = ec.generate_private_key(ec.SECP384R1())
        key_path.write_bytes(private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        key_path.chmod(0o600)
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))  # type: ignore[arg-type]
    jwk.update({"kid": "dev-1", "alg": "ES384", "use": "sig"})
    (data_dir / "dev-jwks.json").write_text(json.dumps({"keys": [jwk]}, indent=2))
    return Client(iss=DEV_ISSUER, jwks={"keys": [jwk]}), key_path


def mint_dev_token(key_path: Path, audience: str, lifetime_s: int = 300) -> str:
    """A token signed with the dev key (for trying the CDS Hooks endpoints locally)."""
    import uuid

    now = int(time.time())
    return jwt.encode({"iss": DEV_ISSUER, "aud": audience, "iat": now, "exp": now + lifetime_s,
                       "jti": str(uuid.uuid4()), "sub": "dev-client"},
                      key_path.read_bytes(), algorithm="ES384", headers={"kid": "dev-1"})

"""Access control: hashed API keys for the REST API; JWT verification for CDS Hooks clients.

CDS Hooks 2.0.1 security: the client's JWT is verified against the JWK Set
configured for its issuer; only asymmetric algorithms are accepted (``none`` and
HMAC are refused), ``aud`` must equal the exact URL called, ``exp``/``iat``/``jti``
are required and a ``jti`` is accepted once (until it expires). The reason for a
refusal goes to the log (never with patient data), not to the caller.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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

def load_api_keys(path: Path | None) -> dict[str, str]:
    """Read ``<sha256 hex> [name]`` lines (``#`` comments). Returns {hash: name}."""
    if path is None:
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:  # fail closed: never an open API by accident
        raise ValueError(
            f"{path}: the API key file cannot be read ({e.__class__.__name__})"
        ) from None
    keys: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        digest, _, name = line.partition(" ")
        digest = digest.strip().lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"{path}: line {n}: expected a SHA-256 hex digest")
        keys[digest] = name.strip() or f"key-{digest[:8]}"
    if not keys:  # a configured but empty file must not open the API (issue 12: fail closed)
        raise ValueError(f"{path}: the API key file lists no key; refusing to run with an open API")
    return keys


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


#: ``remember_jti(iss, jti, expires_at)``: True the first time a token id is seen, False on a
#: replay (``AuditStore.remember_jti``).
RememberJti = Callable[[str, str, datetime], bool]


@dataclass
class JwtVerifier:
    clients: dict[str, Client]
    remember_jti: RememberJti
    jwks_ttl_s: float = 300.0
    http_timeout_s: float = 5.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

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
                clients[iss] = Client(iss=iss, jwks=c.get("jwks"), jwks_url=c.get("jwks_url"),
                                      fhir_servers=_fhir_servers(path, i, c, allow_http),
                                      fhir_without_token=c.get("fhir_without_token") is True)
        for c in extra or []:
            listed = clients.get(c.iss)
            if listed is not None and not c.fhir_servers:
                c.fhir_servers = listed.fhir_servers
                c.fhir_without_token = listed.fhir_without_token
            clients[c.iss] = c
        if DEV_ISSUER in clients and not (clients[DEV_ISSUER].jwks or
                                          clients[DEV_ISSUER].jwks_url):
            del clients[DEV_ISSUER]  # an allow-list for the dev client, without dev mode
        return cls(clients=clients, remember_jti=remember_jti)

    def _keys(self, client: Client, force: bool = False) -> list[dict[str, Any]]:
        if client.jwks_url:
            with self._lock:
                stale = time.monotonic() - client.fetched_at > self.jwks_ttl_s
                if force or client.jwks is None or stale:
                    try:
                        r = httpx.get(client.jwks_url, timeout=self.http_timeout_s)
                        r.raise_for_status()
                        client.jwks = r.json()
                        client.fetched_at = time.monotonic()
                    except (httpx.HTTPError, ValueError) as e:
                        if client.jwks is None:
                            raise AuthError(f"JWKS of {client.iss} not fetchable: "
                                            f"{type(e).__name__}") from None
        keys = (client.jwks or {}).get("keys", [])
        return [k for k in keys if isinstance(k, dict)]

    def verify(self, authorization: str | None, audience: str) -> dict[str, Any]:
        """Claims of a valid token, or raise :class:`AuthError` with the reason."""
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
        key = self._pick(client, kid, alg)
        if key is None and client.jwks_url:
            key = self._pick(client, kid, alg, force=True)
        if key is None:
            raise AuthError(f"no key of {iss} matches kid {kid!r}")
        try:
            claims = jwt.decode(
                token, key=key.key, algorithms=[alg], audience=audience, issuer=iss,
                options={"require": ["iss", "aud", "exp", "iat", "jti"]}, leeway=LEEWAY_S,
            )
        except jwt.InvalidAudienceError:
            raise AuthError(f"audience does not match {audience}") from None
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.PyJWTError as e:
            raise AuthError(f"token refused: {type(e).__name__}: {e}") from None
        iat = claims.get("iat")
        if not isinstance(iat, int | float) or iat > time.time() + LEEWAY_S:
            raise AuthError("iat is in the future")
        exp = float(claims["exp"])
        if exp - float(iat) > MAX_TOKEN_AGE_S + LEEWAY_S:
            raise AuthError("token lifetime longer than allowed")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise AuthError("jti missing")
        if not self.remember_jti(client.iss, jti, datetime.fromtimestamp(exp + LEEWAY_S, UTC)):
            raise AuthError("jti replayed")
        return claims

    def _pick(self, client: Client, kid: str | None, alg: str, force: bool = False) -> PyJWK | None:
        keys = self._keys(client, force=force)
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

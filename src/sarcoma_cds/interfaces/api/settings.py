"""Service settings, read from environment variables (see docs/service.md for each one)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in _TRUE


def _path(env: Mapping[str, str], name: str) -> Path | None:
    v = env.get(name, "").strip()
    return Path(v) if v else None


def _list(env: Mapping[str, str], name: str) -> list[str]:
    return [v.strip() for v in env.get(name, "").split(",") if v.strip()]


def _workers(env: Mapping[str, str]) -> int | None:
    v = env.get("SARCOMA_CDS_WORKERS", "").strip()
    if not v:
        return None
    try:
        n = int(v)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"SARCOMA_CDS_WORKERS must be a whole number of at least 1, not {v!r}")
    return n


def default_workers() -> int:
    """One worker process per core this process may run on (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # (not on Linux)
        return max(1, os.cpu_count() or 1)


@dataclass
class Settings:
    """Everything the service can be configured with. ``Settings.from_env()`` reads the
    variables."""

    data_dir: Path = field(default_factory=lambda: Path("data"))
    database_url: str | None = None  # default: sqlite file <data_dir>/sarcoma-cds.sqlite3
    clients_file: Path | None = None  # SARCOMA_CDS_CLIENTS
    base_url: str | None = None  # SARCOMA_CDS_BASE_URL, e.g. https://cds.example.org
    api_keys_file: Path | None = None  # SARCOMA_CDS_API_KEYS
    store_raw_facts: bool = False  # SARCOMA_CDS_STORE_RAW_FACTS=1
    dev_mode: bool = False  # SARCOMA_CDS_DEV_MODE=1
    max_body_bytes: int = 256 * 1024  # SARCOMA_CDS_MAX_BODY_BYTES
    fhir_timeout_s: float = 5.0  # SARCOMA_CDS_FHIR_TIMEOUT
    fhir_deadline_s: float = 8.0  # SARCOMA_CDS_FHIR_DEADLINE: all FHIR fetches of one hook call
    fhir_max_bytes: int = 10 * 1024 * 1024  # SARCOMA_CDS_FHIR_MAX_BYTES: per FHIR response
    rate_limit: int = 600  # SARCOMA_CDS_RATE_LIMIT: requests per minute per client; 0 = off
    run_migrations: bool = True
    kb_dir: Path | None = None  # SARCOMA_CDS_KB_DIR: a draft knowledge base to preview (serve --kb)
    # SARCOMA_CDS_ALLOWED_HOSTS (comma-separated Host names; None: loopback + the base URL's host)
    allowed_hosts: list[str] | None = None
    frame_ancestors: str = "'none'"  # SARCOMA_CDS_FRAME_ANCESTORS (CSP frame-ancestors sources)
    # SARCOMA_CDS_DATA_KEYS: Fernet keys for patient data at rest (first encrypts, all decrypt);
    # empty: a key made once in <data_dir>/data-key
    data_keys: list[str] = field(default_factory=list, repr=False)
    # sign-in (issue 12; see docs/security/identity.md)
    oidc_issuer: str | None = None  # SARCOMA_CDS_OIDC_ISSUER
    oidc_client_id: str | None = None  # SARCOMA_CDS_OIDC_CLIENT_ID
    oidc_client_secret: str | None = None  # SARCOMA_CDS_OIDC_CLIENT_SECRET (none: public client)
    oidc_allowed: str = ""  # SARCOMA_CDS_OIDC_ALLOWED: users, emails, groups (or *)
    oidc_roles: str = ""  # SARCOMA_CDS_OIDC_ROLES: clinician=group-a,group-b;auditor=group-c
    oidc_roles_claim: str = "groups"  # SARCOMA_CDS_OIDC_ROLES_CLAIM
    session_hours: float = 8.0  # SARCOMA_CDS_SESSION_HOURS
    session_idle_minutes: float = 60.0  # SARCOMA_CDS_SESSION_IDLE_MINUTES
    smart_issuers: str = ""  # SARCOMA_CDS_SMART_ISSUERS: FHIR servers that may launch the app
    smart_client_id: str | None = None  # SARCOMA_CDS_SMART_CLIENT_ID
    workers: int | None = None  # SARCOMA_CDS_WORKERS: serve's worker processes (None: one per core)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e = os.environ if env is None else env
        data_dir = _path(e, "SARCOMA_CDS_DATA_DIR") or Path("data")
        base = e.get("SARCOMA_CDS_BASE_URL", "").strip().rstrip("/") or None
        return cls(
            data_dir=data_dir,
            database_url=e.get("DATABASE_URL", "").strip() or None,
            clients_file=_path(e, "SARCOMA_CDS_CLIENTS"),
            base_url=base,
            api_keys_file=_path(e, "SARCOMA_CDS_API_KEYS"),
            store_raw_facts=_flag(e, "SARCOMA_CDS_STORE_RAW_FACTS"),
            dev_mode=_flag(e, "SARCOMA_CDS_DEV_MODE"),
            max_body_bytes=int(e.get("SARCOMA_CDS_MAX_BODY_BYTES", "") or 256 * 1024),
            fhir_timeout_s=float(e.get("SARCOMA_CDS_FHIR_TIMEOUT", "") or 5.0),
            fhir_deadline_s=float(e.get("SARCOMA_CDS_FHIR_DEADLINE", "") or 8.0),
            fhir_max_bytes=int(e.get("SARCOMA_CDS_FHIR_MAX_BYTES", "") or 10 * 1024 * 1024),
            rate_limit=int(e.get("SARCOMA_CDS_RATE_LIMIT", "").strip() or 600),
            kb_dir=_path(e, "SARCOMA_CDS_KB_DIR"),
            allowed_hosts=_list(e, "SARCOMA_CDS_ALLOWED_HOSTS") or None,
            frame_ancestors=e.get("SARCOMA_CDS_FRAME_ANCESTORS", "").strip() or "'none'",
            data_keys=_list(e, "SARCOMA_CDS_DATA_KEYS"),
            oidc_issuer=e.get("SARCOMA_CDS_OIDC_ISSUER", "").strip() or None,
            oidc_client_id=e.get("SARCOMA_CDS_OIDC_CLIENT_ID", "").strip() or None,
            oidc_client_secret=e.get("SARCOMA_CDS_OIDC_CLIENT_SECRET", "").strip() or None,
            oidc_allowed=e.get("SARCOMA_CDS_OIDC_ALLOWED", "").strip(),
            oidc_roles=e.get("SARCOMA_CDS_OIDC_ROLES", "").strip(),
            oidc_roles_claim=e.get("SARCOMA_CDS_OIDC_ROLES_CLAIM", "").strip() or "groups",
            session_hours=float(e.get("SARCOMA_CDS_SESSION_HOURS", "") or 8.0),
            session_idle_minutes=float(e.get("SARCOMA_CDS_SESSION_IDLE_MINUTES", "") or 60.0),
            smart_issuers=e.get("SARCOMA_CDS_SMART_ISSUERS", "").strip(),
            smart_client_id=e.get("SARCOMA_CDS_SMART_CLIENT_ID", "").strip() or None,
            workers=_workers(e),
        )

    @property
    def hosts(self) -> list[str]:
        """The Host names the service answers (DNS rebinding): configured, else the loopback
        names and the base URL's host."""
        if self.allowed_hosts:
            return list(self.allowed_hosts)
        out = ["127.0.0.1", "localhost", "[::1]"]
        if self.base_url:
            from urllib.parse import urlsplit

            host = urlsplit(self.base_url).hostname
            if host and host not in out:
                out.append(host)
        return out

    @property
    def db_url(self) -> str:
        if self.database_url:
            url = self.database_url
            # Heroku-style URLs: use the psycopg 3 driver
            if url.startswith("postgres://"):
                url = "postgresql+psycopg://" + url[len("postgres://"):]
            elif url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url[len("postgresql://"):]
            return url
        return f"sqlite:///{(self.data_dir / 'sarcoma-cds.sqlite3').resolve()}"

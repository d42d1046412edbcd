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
    run_migrations: bool = True
    kb_dir: Path | None = None  # SARCOMA_CDS_KB_DIR: a draft knowledge base to preview (serve --kb)
    # SARCOMA_CDS_ALLOWED_HOSTS (comma-separated Host names; None: loopback + the base URL's host)
    allowed_hosts: list[str] | None = None
    frame_ancestors: str = "'none'"  # SARCOMA_CDS_FRAME_ANCESTORS (CSP frame-ancestors sources)
    # SARCOMA_CDS_DATA_KEYS: Fernet keys for patient data at rest (first encrypts, all decrypt);
    # empty: a key made once in <data_dir>/data-key
    data_keys: list[str] = field(default_factory=list, repr=False)

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
            kb_dir=_path(e, "SARCOMA_CDS_KB_DIR"),
            allowed_hosts=_list(e, "SARCOMA_CDS_ALLOWED_HOSTS") or None,
            frame_ancestors=e.get("SARCOMA_CDS_FRAME_ANCESTORS", "").strip() or "'none'",
            data_keys=_list(e, "SARCOMA_CDS_DATA_KEYS"),
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

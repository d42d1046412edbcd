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
    run_migrations: bool = True
    kb_dir: Path | None = None  # SARCOMA_CDS_KB_DIR: a draft knowledge base to preview (serve --kb)
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
            kb_dir=_path(e, "SARCOMA_CDS_KB_DIR"),
            workers=_workers(e),
        )

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

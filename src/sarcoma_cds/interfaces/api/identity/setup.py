"""Wiring of identity into an app: its mode and session store on ``app.state.identity``, the
sign-in routes, and the answers to refused web pages (called by ``create_app``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import FastAPI

from sarcoma_cds.interfaces.api.identity import routes, smart
from sarcoma_cds.interfaces.api.identity.errors import install_web_refusals
from sarcoma_cds.interfaces.api.identity.state import Identity, build_identity
from sarcoma_cds.interfaces.api.secret_key import load_secret_key
from sarcoma_cds.store.sessions import WebSessionStore


def install_identity(app: FastAPI, settings: Any, services: Any, *, keyed: bool) -> Identity:
    """Configure identity for ``app`` (raises ``ConfigError`` naming the variable at fault)."""
    signin = any(getattr(settings, k, None) for k in (
        "oidc_issuer", "oidc_client_id", "smart_issuers", "smart_client_id"))
    secret = load_secret_key(settings.data_dir) if signin else None
    idle = float(getattr(settings, "session_idle_minutes", 60.0) or 0)  # (> 0: build_identity)
    sessions = WebSessionStore(services.store.sessions,
                               idle=timedelta(minutes=max(idle, 0))) if signin else None
    ident = build_identity(settings, keyed=keyed, secret=secret, sessions=sessions)
    app.state.identity = ident
    app.include_router(routes.router)
    app.include_router(smart.router)
    install_web_refusals(app)
    return ident

"""The ASGI application: REST API, FHIR endpoint, CDS Hooks 2.0.1 services, audit.

``create_app(settings=None)`` builds everything from ``Settings.from_env()`` (see
docs/service.md) and assembles the routers by surface (``routes_core``, ``routes_fhir``,
``routes_audit``, ``routes_cds``; ADR 0105): routes get the services and the caller from
dependencies (``deps``) and raise errors that one set of handlers answers (``errors``).
The web app (``sarcoma_cds.interfaces.web``), when installed, is mounted last and serves
``/``. Logs carry request id, route, status and timing only: never facts, bundles or tokens.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders

from sarcoma_cds import __version__
from sarcoma_cds.interfaces.api import (
    hardening,
    offline_docs,
    rate_limit,
    routes_audit,
    routes_cds,
    routes_core,
    routes_fhir,
)
from sarcoma_cds.interfaces.api.deps import Access
from sarcoma_cds.interfaces.api.errors import INTERNAL_ERROR, install_error_handlers
from sarcoma_cds.interfaces.api.identity.setup import install_identity
from sarcoma_cds.interfaces.api.openapi import install_openapi
from sarcoma_cds.interfaces.api.problems import problem
from sarcoma_cds.interfaces.api.security import (
    JwtVerifier,
    dev_client,
    load_api_key_roles,
    load_api_keys,
)
from sarcoma_cds.interfaces.api.services import Services
from sarcoma_cds.interfaces.api.settings import Settings

log = logging.getLogger("sarcoma_cds.service")
access_log = logging.getLogger("sarcoma_cds.service.access")

#: Answer to an upload from a web page over its limit (``mount`` sets ``app.state.body_limits``).
WEB_TOO_LARGE = (
    '<!doctype html><html lang="en"><meta charset="utf-8"><title>File too large</title>'
    "<h1>File too large</h1><p>The upload is larger than the page accepts (1 MB).</p>"
    '<p><a href="/import">Back to the import page</a></p></html>'
)


class BodyLimitMiddleware:
    """Refuses bodies over ``limit`` bytes with 413 (by Content-Length, or while streaming)."""

    def __init__(self, app: Any, limit: int, path_limits: dict[str, int] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.path_limits = path_limits or {}  # web form pages with a larger limit (issue 14)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.path_limits.get(scope.get("path", ""), self.limit)
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    too_big = int(v) > limit
                except ValueError:
                    too_big = False
                if too_big:
                    await self._refuse(scope, receive, send)
                    return
        if scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        # Read the whole body first (it is small by definition), refusing it past the limit.
        chunks: list[bytes] = []
        seen = 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body = msg.get("body", b"")
            seen += len(body)
            if seen > limit:
                await self._refuse(scope, receive, send)
                return
            chunks.append(body)
            if not msg.get("more_body", False):
                break
        await self.app(scope, hardening.replay_body(b"".join(chunks), receive), send)

    async def _refuse(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # this middleware runs outside request_context: the request id is taken (or made) here,
        # so that a 413 carries ``instance`` and ``X-Request-ID`` like every other problem
        rid = request_id(dict(scope.get("headers", [])).get(b"x-request-id", b"").decode("latin-1"))
        resp: Any = problem(413, f"request body larger than {self.limit} bytes", request_id=rid,
                            headers={"X-Request-ID": rid})
        if scope.get("path") in self.path_limits:  # a web page's upload: answer with a page
            resp = HTMLResponse(WEB_TOO_LARGE, status_code=413, headers={"X-Request-ID": rid})
        await resp(scope, receive, send)


def request_id(given: str) -> str:
    """The caller's ``X-Request-ID`` when it is a short token, else a new one."""
    if 0 < len(given) <= 64 and given.replace("-", "").isalnum():
        return given
    return uuid.uuid4().hex


class RequestContext:
    """Give the request an id (the caller's ``X-Request-ID`` when sane), answer it on the
    response, turn an exception that escaped every handler into a 500 problem, and write the
    access log line (request id, method, route, status, time: nothing else).

    A plain ASGI middleware (issue 13): Starlette's ``BaseHTTPMiddleware`` runs every request
    through an extra task and memory streams, a large share of a request's cost here."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope.get("headers", ()) if k == b"x-request-id"), b"")
        rid = request_id(given.decode("latin-1"))
        scope.setdefault("state", {})["request_id"] = rid  # (read as request.state.request_id)
        t0 = time.perf_counter()
        status = 500
        started = False

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error (request %s)", rid)
            status = 500
            if not started:
                await problem(500, INTERNAL_ERROR, request_id=rid,
                              headers={"X-Request-ID": rid})(scope, receive, send)
        route = scope.get("route")
        access_log.info("request_id=%s method=%s route=%s status=%s ms=%.1f", rid,
                        scope.get("method"), getattr(route, "path", "-"), status,
                        (time.perf_counter() - t0) * 1000)


#: Threads for blocking work (engine, mapping, JWT checks, CDS hooks waiting for their commit):
#: above the concurrency a worker is expected to carry, so that no request queues for a thread.
THREADPOOL_SIZE = 64


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start-up and shutdown of a worker (issue 13): size the threadpool; at shutdown, commit
    the audit records still queued for the group commit and stop its writer thread."""
    anyio.to_thread.current_default_thread_limiter().total_tokens = THREADPOOL_SIZE
    yield
    await run_in_threadpool(app.state.services.store.writer.close)


def build_access(settings: Settings, services: Services) -> Access:
    """API keys and the CDS Hooks JWT verifier from the settings (warning about open doors)."""
    api_keys = load_api_keys(settings.api_keys_file)
    extra_clients = []
    if settings.dev_mode:
        client, key_path = dev_client(settings.data_dir)
        extra_clients.append(client)
        log.warning("DEVELOPMENT MODE: trusting the local key pair %s (issuer %s); "
                    "never use in production", key_path, client.iss)
    verifier = JwtVerifier.from_file(settings.clients_file, services.store.remember_jti,
                                     extra_clients, allow_http=settings.dev_mode)
    verifier.http_timeout_s = settings.fhir_timeout_s
    services.extras.update(api_keys=api_keys, verifier=verifier)
    signin = any((settings.oidc_issuer, settings.oidc_client_id, settings.smart_issuers))
    if not api_keys and not signin:
        log.warning("no API keys configured (SARCOMA_CDS_API_KEYS): the REST API is open; "
                    "serve binds 127.0.0.1 only; GET /audit is unavailable")
    elif not api_keys:
        log.warning("no API keys configured (SARCOMA_CDS_API_KEYS) while sign-in is: "
                    "the REST API is closed (401); GET /audit is unavailable")
    if not settings.base_url:
        log.warning("SARCOMA_CDS_BASE_URL is not set: "
                    "JWT audiences are checked against the request URL")
    return Access(api_keys=api_keys, verifier=verifier, base_url=settings.base_url,
                  key_roles=load_api_key_roles(settings.api_keys_file))


def _mount_web(app: FastAPI, services: Services) -> None:
    """Mount the web pages when the web extra is installed (the API runs without it)."""
    try:
        from sarcoma_cds.interfaces.web import mount
    except ModuleNotFoundError:
        return
    mount(app, services)


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    """Build the application. ``settings`` default to the environment (``Settings.from_env()``)."""
    settings = settings or (services.settings if services else Settings.from_env())
    services = services or Services.build(settings)
    access = build_access(settings, services)

    app = FastAPI(
        title="sarcoma-cds",
        version=__version__,
        description=("Clinical decision support for adult soft-tissue sarcoma and GIST. "
                     f"{services.disclaimer}"),
        docs_url=None, redoc_url=None, openapi_url="/openapi.json",  # docs: offline_docs.install
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry hooks are off: the service exports no traces or metrics
        # (request spans would carry case URLs to a collector), and checking for a configured
        # provider on every request costs about 4 % of a REST request's CPU (issue 13)
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    offline_docs.install(app)  # /api/docs, /api/redoc with local assets (issue 14)
    app.state.services = services
    app.state.settings = settings
    app.state.access = access
    app.add_middleware(RequestContext)
    install_error_handlers(app)
    rate_limit.install(app, settings.rate_limit, services.store)  # per-client limits (issue 12)
    for surface in (routes_core, routes_fhir, routes_audit, routes_cds):  # (the OpenAPI order)
        app.include_router(surface.router)
    install_openapi(app)
    install_identity(app, settings, services, keyed=bool(access.api_keys))  # (issue 12)

    _mount_web(app, services)

    hardening.install(app, settings)  # host allow-list, origin check, CSRF, security headers
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes,
                       path_limits=getattr(app.state, "body_limits", None))
    # the Host and body-size refusals are made outside the hardening layer: headers for them
    app.add_middleware(hardening.RefusalHeaders, frame_ancestors=settings.frame_ancestors)
    return app

"""The ASGI application: REST API, FHIR endpoint, CDS Hooks 2.0.1 services, audit.

``create_app(settings=None)`` builds everything from ``Settings.from_env()`` (see
docs/service.md). The web app (``sarcoma_cds.interfaces.web``), when installed, is
mounted last and serves ``/``. Logs carry request id, route, status and timing
only: never facts, bundles or tokens.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sarcoma_cds import InvalidFacts, PatientFacts, __version__
from sarcoma_cds.interfaces import json_input
from sarcoma_cds.interfaces.api import cds_hooks, offline_docs
from sarcoma_cds.interfaces.api.problems import problem, problem_responses
from sarcoma_cds.interfaces.api.security import (
    AuthError,
    JwtVerifier,
    check_api_key,
    dev_client,
    load_api_keys,
)
from sarcoma_cds.interfaces.api.services import Services
from sarcoma_cds.interfaces.api.settings import Settings
from sarcoma_cds.interfaces.shapes import groups_document

log = logging.getLogger("sarcoma_cds.service")
access_log = logging.getLogger("sarcoma_cds.service.access")

JSON_OBJECT = {"type": "object", "additionalProperties": True}


#: Answer to an upload from a web page over its limit (``mount`` sets ``app.state.body_limits``).
WEB_TOO_LARGE = ('<!doctype html><html lang="en"><meta charset="utf-8"><title>File too large</title>'
                 '<h1>File too large</h1><p>The upload is larger than the page accepts (1 MB).</p>'
                 '<p><a href="/import">Back to the import page</a></p></html>')


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
        data = b"".join(chunks)
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": data, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

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


def _facts_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    schema = PatientFacts.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return schema, defs


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    """Build the application. ``settings`` default to the environment (``Settings.from_env()``)."""
    settings = settings or (services.settings if services else Settings.from_env())
    services = services or Services.build(settings)
    api_keys = load_api_keys(settings.api_keys_file)
    extra_clients = []
    if settings.dev_mode:
        client, key_path = dev_client(settings.data_dir)
        extra_clients.append(client)
        log.warning("DEVELOPMENT MODE: trusting the local key pair %s (issuer %s); never use in production",
                    key_path, client.iss)
    verifier = JwtVerifier.from_file(settings.clients_file, services.store.remember_jti, extra_clients)
    verifier.http_timeout_s = settings.fhir_timeout_s
    services.extras.update(api_keys=api_keys, verifier=verifier)
    if not api_keys:
        log.warning("no API keys configured (SARCOMA_CDS_API_KEYS): the REST API is open; "
                    "serve binds 127.0.0.1 only; GET /audit is unavailable")
    if not settings.base_url:
        log.warning("SARCOMA_CDS_BASE_URL is not set: JWT audiences are checked against the request URL")

    app = FastAPI(
        title="sarcoma-cds",
        version=__version__,
        description=("Clinical decision support for adult soft-tissue sarcoma and GIST. "
                     f"{services.disclaimer}"),
        docs_url=None, redoc_url=None, openapi_url="/openapi.json",  # docs: offline_docs.install
    )
    offline_docs.install(app)  # /api/docs, /api/redoc with local assets (issue 14)
    app.state.services = services
    app.state.settings = settings

    # ------------------------------------------------------------ middleware & errors
    @app.middleware("http")
    async def request_context(request: Request, call_next: Any) -> Any:
        rid = request_id(request.headers.get("x-request-id", ""))
        request.state.request_id = rid
        t0 = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
        except Exception:
            log.exception("unhandled error (request %s)", rid)
            response = problem(500, "internal error; quote the request id to the operators", request_id=rid)
        response.headers["X-Request-ID"] = rid
        route = request.scope.get("route")
        access_log.info("request_id=%s method=%s route=%s status=%s ms=%.1f", rid, request.method,
                        getattr(route, "path", "-"), status, (time.perf_counter() - t0) * 1000)
        return response

    def rid(request: Request) -> str:
        return getattr(request.state, "request_id", "-")

    @app.exception_handler(InvalidFacts)
    async def _invalid(request: Request, exc: InvalidFacts) -> JSONResponse:
        return problem(422, "the patient facts are invalid: " + "; ".join(f for f, _ in exc.problems),
                       request_id=rid(request),
                       errors=[{"field": f, "message": m} for f, m in exc.problems])

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for e in exc.errors():
            loc = [str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path")]
            errors.append({"field": ".".join(loc) or "body", "message": str(e.get("msg", "invalid"))})
        return problem(422, "invalid request", request_id=rid(request), errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), request_id=rid(request),
                       headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _any(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled %s (request %s)", type(exc).__name__, rid(request))
        return problem(500, "internal error; quote the request id to the operators", request_id=rid(request))

    # ------------------------------------------------------------ helpers
    def caller_or_401(request: Request, *, always: bool = False) -> str | JSONResponse:
        if not api_keys:
            if always:
                return problem(401, "this endpoint needs an API key; none are configured (SARCOMA_CDS_API_KEYS)",
                               request_id=rid(request), headers={"WWW-Authenticate": "Bearer"})
            return "local"
        name = check_api_key(api_keys, request.headers.get("authorization"))
        if name is None:
            log.info("request_id=%s API key missing or unknown", rid(request))
            return problem(401, "a valid API key is required (Authorization: Bearer <key>)",
                           request_id=rid(request), headers={"WWW-Authenticate": "Bearer"})
        return f"apikey:{name}"

    async def json_body(request: Request) -> Any:
        raw = await request.body()
        if not raw:
            raise _BodyError("request body is empty; expected JSON")
        try:
            return json_input.loads(raw)  # (a repeated key raises DuplicateKeyError: 422 below)
        except json_input.DuplicateKeyError:
            raise
        except (ValueError, UnicodeDecodeError):
            raise _BodyError("request body is not valid JSON") from None

    class _BodyError(Exception):
        pass

    @app.exception_handler(_BodyError)
    async def _body(request: Request, exc: _BodyError) -> JSONResponse:
        return problem(400, str(exc), request_id=rid(request))

    @app.exception_handler(json_input.DuplicateKeyError)
    async def _duplicate(request: Request, exc: json_input.DuplicateKeyError) -> JSONResponse:
        return problem(422, f"{exc}: {exc.message}", request_id=rid(request),
                       errors=[{"field": exc.key, "message": exc.message}])

    facts_schema, facts_defs = _facts_schema()

    # ------------------------------------------------------------ REST
    @app.get("/api", summary="API index", tags=["meta"])
    def api_index() -> dict[str, Any]:
        return {
            "service": "sarcoma-cds", "version": __version__, "disclaimer": services.disclaimer,
            "links": {"openapi": "/openapi.json", "docs": "/api/docs", "recommendations": "/recommendations",
                      "groups": "/groups", "fhir": "/fhir/recommendations", "cds_services": "/cds-services",
                      "audit": "/audit", "health": "/healthz", "version": "/version"},
        }

    @app.get("/healthz", tags=["meta"], responses=problem_responses(503))
    def healthz(request: Request) -> Any:
        ok = services.store.ping()
        if not ok:
            return problem(503, "database unavailable", request_id=rid(request))
        return {"status": "ok", "database": "ok"}

    @app.get("/version", tags=["meta"])
    def version() -> dict[str, Any]:
        kb = services.kb
        return {"service": __version__,
                "guideline": {"id": kb.data.meta.id, "version": kb.version, "content_hash": kb.content_hash}}

    @app.get("/groups", tags=["knowledge base"], responses=problem_responses(401))
    def groups(request: Request) -> Any:
        who = caller_or_401(request)
        if isinstance(who, JSONResponse):
            return who
        return groups_document(services.kb)

    @app.get("/groups/{group_id}", tags=["knowledge base"], responses=problem_responses(401, 404))
    def group(group_id: str, request: Request) -> Any:
        who = caller_or_401(request)
        if isinstance(who, JSONResponse):
            return who
        g = services.kb.groups.get(group_id)
        if g is None:
            return problem(404, f"no patient group {group_id!r}", request_id=rid(request))
        data = g.model_dump(mode="json")
        for pi, p in enumerate(g.pathways):
            for si, s in enumerate(p.steps):
                data["pathways"][pi]["steps"][si]["treatment"] = s.treatment
        return data

    @app.post(
        "/recommendations", tags=["recommendations"],
        summary="Patient facts (contract) in, recommendation (contract) out",
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": facts_schema}}}},
        responses={200: {"description": "The recommendation (decision support, not an order)",
                         "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Recommendation"}}}},
                   **problem_responses(400, 401, 413, 422)},
    )
    async def post_recommendation(request: Request) -> Any:
        who = caller_or_401(request)
        if isinstance(who, JSONResponse):
            return who
        body = await json_body(request)
        rec, audit_id = services.recommend_and_record(body, "rest", who, request_id=rid(request))
        return JSONResponse(rec.model_dump(mode="json"), headers={"X-Audit-ID": audit_id})

    @app.post(
        "/fhir/recommendations", tags=["FHIR"],
        summary="mCODE Bundle in: facts, provenance, gaps, recommendation and its CPG Bundle out",
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/fhir+json": {"schema": JSON_OBJECT}, "application/json": {"schema": JSON_OBJECT}}}},
        responses={200: {"description": "Mapped facts and the recommendation"}, **problem_responses(400, 401, 413, 422)},
    )
    async def post_fhir(request: Request) -> Any:
        who = caller_or_401(request)
        if isinstance(who, JSONResponse):
            return who
        bundle = await json_body(request)
        ans = services.answer_bundle(bundle, "fhir", who, request_id=rid(request))
        if ans.recommendation is None or ans.audit_id is None:
            return problem(422, "the bundle does not give valid contract facts: "
                           + "; ".join(f for f, _ in ans.problems), request_id=rid(request),
                           errors=[{"field": f, "message": m} for f, m in ans.problems],
                           facts=ans.facts, provenance=ans.provenance, gaps=ans.gaps)
        rec, audit_id = ans.recommendation, ans.audit_id
        return JSONResponse({
            "audit_id": audit_id, "facts": ans.facts, "provenance": ans.provenance, "gaps": ans.gaps,
            "recommendation": rec.model_dump(mode="json"),
            "fhir": services.recommendation_to_fhir(rec, ans.facts, audit_id=audit_id,
                                                    patient_ref=ans.reported.get("patient")),
            "disclaimer": services.disclaimer,
        }, headers={"X-Audit-ID": audit_id})

    @app.get("/audit", tags=["audit"], responses=problem_responses(401, 422))
    def audit(request: Request, limit: int = Query(50, ge=1, le=500), after: int = Query(0, ge=0),
              interface: str | None = Query(None, max_length=20)) -> Any:
        who = caller_or_401(request, always=True)
        if isinstance(who, JSONResponse):
            return who
        items, nxt = services.store.page(limit=limit, after=after, interface=interface)
        body: dict[str, Any] = {"items": items, "next_after": nxt}
        if nxt is not None:
            body["next"] = f"/audit?limit={limit}&after={nxt}" + (f"&interface={interface}" if interface else "")
        return body

    @app.get("/audit/{audit_id}", tags=["audit"], responses=problem_responses(401, 404))
    def audit_one(audit_id: str, request: Request) -> Any:
        who = caller_or_401(request, always=True)
        if isinstance(who, JSONResponse):
            return who
        rec = services.store.get_record(audit_id)
        if rec is None:
            return problem(404, "no such audit record", request_id=rid(request))
        return rec

    # ------------------------------------------------------------ CDS Hooks
    def base_for(request: Request) -> str:
        return settings.base_url or str(request.base_url).rstrip("/")

    def jwt_or_401(request: Request) -> dict[str, Any] | JSONResponse:
        audience = base_for(request) + request.url.path
        try:
            return verifier.verify(request.headers.get("authorization"), audience)
        except AuthError as e:
            log.warning("request_id=%s CDS Hooks token refused: %s", rid(request), e)
            return JSONResponse({"error": "unauthorized"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})

    def cds_caller(service_id: str, request: Request) -> Any:
        """The verified JWT claims of a CDS client calling a known service, or the error response."""
        if service_id not in cds_hooks.HOOKS:
            return problem(404, f"no CDS service {service_id!r}", request_id=rid(request))
        return jwt_or_401(request)

    @app.get("/cds-services", tags=["CDS Hooks"], summary="CDS Hooks discovery")
    def cds_discovery() -> dict[str, Any]:
        return cds_hooks.discovery()

    @app.post("/cds-services/{service_id}", tags=["CDS Hooks"],
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": JSON_OBJECT}}}},
              responses={200: {"description": "CDS Hooks cards"}, 401: {"description": "Unauthorized"},
                         404: {"description": "Unknown service"}, 400: {"description": "Bad request"},
                         412: {"description": "Data neither prefetched nor fetchable"}, 413: {"description": "Too large"}})
    async def cds_call(service_id: str, request: Request) -> Any:
        claims = cds_caller(service_id, request)
        if isinstance(claims, JSONResponse):
            return claims
        body = await json_body(request)
        if not isinstance(body, dict):
            return problem(400, "expected a CDS Hooks request object", request_id=rid(request))
        try:
            from starlette.concurrency import run_in_threadpool

            return await run_in_threadpool(
                cds_hooks.run_hook, services, service_id, body, caller=f"cds:{claims['iss']}",
                request_id=rid(request), base_url=base_for(request))
        except cds_hooks.BadHookRequest as e:
            return problem(400, str(e), request_id=rid(request))
        except cds_hooks.PreconditionFailed as e:
            log.info("request_id=%s 412: %s", rid(request), e)
            return problem(412, str(e), request_id=rid(request))

    @app.post("/cds-services/{service_id}/feedback", tags=["CDS Hooks"],
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": JSON_OBJECT}}}},
              responses={200: {"description": "Stored"}, 400: {"description": "Bad request"},
                         401: {"description": "Unauthorized"}, 404: {"description": "Unknown service"}})
    async def cds_feedback(service_id: str, request: Request) -> Any:
        claims = cds_caller(service_id, request)
        if isinstance(claims, JSONResponse):
            return claims
        body = await json_body(request)
        items = body.get("feedback") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            return problem(400, "expected {\"feedback\": [...]}", request_id=rid(request))
        parsed = []
        for i, fb in enumerate(items):
            if not isinstance(fb, dict) or not isinstance(fb.get("card"), str):
                return problem(400, f"feedback[{i}].card (a card uuid) is required", request_id=rid(request))
            if fb.get("outcome") not in ("accepted", "overridden"):
                return problem(400, f"feedback[{i}].outcome must be accepted or overridden", request_id=rid(request))
            orr = fb.get("overrideReason")
            if orr is not None and not isinstance(orr, dict):
                return problem(400, f"feedback[{i}].overrideReason must be an object", request_id=rid(request))
            acc = fb.get("acceptedSuggestions")
            if acc is not None and not isinstance(acc, list):
                return problem(400, f"feedback[{i}].acceptedSuggestions must be a list", request_id=rid(request))
            parsed.append(fb)
        from datetime import datetime

        for fb in parsed:
            ts = None
            if isinstance(fb.get("outcomeTimestamp"), str):
                try:
                    ts = datetime.fromisoformat(fb["outcomeTimestamp"].replace("Z", "+00:00"))
                except ValueError:
                    ts = None
            services.store.record_feedback(
                kind="cds_feedback", outcome=fb["outcome"], caller=f"cds:{claims['iss']}",
                service_id=service_id, card_uuid=fb["card"][:36], outcome_at=ts,
                override_reason=fb.get("overrideReason"), accepted_suggestions=fb.get("acceptedSuggestions"))
        return {}

    # ------------------------------------------------------------ OpenAPI components
    def custom_openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        from fastapi.openapi.utils import get_openapi

        from sarcoma_cds import Recommendation

        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        comps = schema.setdefault("components", {}).setdefault("schemas", {})
        comps.update(facts_defs)
        rec_schema = Recommendation.model_json_schema(ref_template="#/components/schemas/{model}")
        comps.update(rec_schema.pop("$defs", {}))
        comps["Recommendation"] = rec_schema
        comps["PatientFacts"] = facts_schema
        app.openapi_schema = schema
        return schema

    app.openapi = custom_openapi  # type: ignore[method-assign]

    # ------------------------------------------------------------ web app
    try:
        from sarcoma_cds.interfaces.web import mount
    except ModuleNotFoundError:
        mount = None
    if mount is not None:
        mount(app, services)

    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes,
                       path_limits=getattr(app.state, "body_limits", None))
    return app

"""Web hardening of every response and every state-changing request (issue 12, hardening 1-2).

:func:`install` puts two layers in front of the application, outermost first:

* Starlette's ``TrustedHostMiddleware``: a request whose ``Host`` is not one of the service's
  names (``Settings.hosts``: ``SARCOMA_CDS_ALLOWED_HOSTS``, else the loopback names and the
  host of ``SARCOMA_CDS_BASE_URL``) is refused 400, so a DNS-rebinding page cannot talk to a
  service on 127.0.0.1 under its own name.
* :class:`HardeningMiddleware`:

  - an unsafe request (POST, PUT, PATCH, DELETE) whose ``Origin`` (or, absent, ``Referer``)
    names another origin is refused 403, on every route, unless it carries an
    ``Authorization: Bearer`` header (API keys and CDS Hooks JWTs are not ambient credentials:
    a browser cannot add them to a cross-site request; ``Basic`` and ``Negotiate`` are, a
    browser sends them by itself);
  - CSRF tokens: every browser gets a random per-browser cookie; a form's token is the
    HMAC-SHA256 of that cookie under the server's signing secret (``secret_key.py``), rendered
    by the ``csrf_field()`` template global; every unsafe form post (urlencoded or multipart)
    without ``Authorization: Bearer`` must carry it (field ``csrf_token`` or header
    ``X-CSRF-Token``), else a 403 page says the form expired. It does not depend on sign-in,
    so it works with or without a session;
  - response headers: a Content-Security-Policy with a per-request script nonce (no inline
    script runs otherwise) and ``frame-ancestors`` (``SARCOMA_CDS_FRAME_ANCESTORS``, default
    ``'none'``), ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: same-origin``,
    ``Cache-Control: no-store`` on every response that can carry patient data (everything but
    static files and the knowledge-base pages), and HSTS when the base URL is https.

Other routers' forms (a logout form, say) are covered without any change: the check is on the
request, not on a route. Render ``{{ csrf_field() }}`` inside the form. A route that must take
cross-site posts and proves them otherwise (an OpenID Connect ``form_post`` callback checked by
its signed ``state``) adds its path to ``app.state.csrf_exempt_paths``.

The audit trail is keyed by the server's own request id: a client's ``X-Request-ID`` is moved
aside before the request-context middleware makes the id, and echoed as ``X-Client-Request-ID``.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import re
import secrets
import uuid
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request, cookie_parser
from starlette.responses import HTMLResponse, Response

from sarcoma_cds.interfaces.api import log_privacy
from sarcoma_cds.interfaces.api.problems import problem
from sarcoma_cds.interfaces.api.secret_key import load_secret_key
from sarcoma_cds.interfaces.api.settings import Settings

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
_COOKIE_VALUE = re.compile(r"[A-Za-z0-9_-]{43}")

#: Responses that never carry patient data (static files, the algorithm, the API's own
#: documents) may be cached; every other response gets ``Cache-Control: no-store``. (Not the
#: home page: it lists the recent saved cases by label to a user who may see them.)
CACHEABLE_PATHS = frozenset({
    "/search", "/favicon.ico", "/openapi.json", "/version", "/api", "/api/docs",
    "/api/redoc", "/groups", "/cds-services",
})
CACHEABLE_PREFIXES = ("/static/", "/api/docs-static/", "/groups/", "/ui/groups")
#: Pages whose third-party scripts inject styles (Swagger UI, ReDoc): inline styles allowed.
DOCS_PATHS = frozenset({"/api/docs", "/api/redoc", "/api/docs/oauth2-redirect"})

FORM_EXPIRED = (
    '<!doctype html><html lang="en"><meta charset="utf-8"><title>This form has expired</title>'
    '<link rel="stylesheet" href="/static/web/web.css">'
    '<main class="wrap"><h1>This form has expired</h1>'
    "<p>The page you sent this form from is too old, or it did not come from this service, so "
    "nothing was saved. Open the page again and send the form from there.</p>"
    '<p><a class="btn" href="{back}">Back to the form</a></p></main></html>'
)
CROSS_ORIGIN_PAGE = (
    '<!doctype html><html lang="en"><meta charset="utf-8"><title>Request refused</title>'
    "<h1>Request refused</h1><p>This request came from another web site; nothing was done.</p>"
    '<p><a href="/">Go to the service</a></p></html>'
)


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of ``url`` (default ports dropped, lower case), or None."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is None or (scheme, port) in (("http", 80), ("https", 443)):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


class CsrfTokens:
    """Per-browser cookie and the HMAC-signed token bound to it (signed double submit)."""

    def __init__(self, secret: bytes, *, secure: bool, framed: bool) -> None:
        self._key = hashlib.sha256(b"sarcoma-cds csrf\x00" + secret).digest()
        self.secure = secure
        self.cookie_name = "__Host-sarcoma_csrf" if secure else "sarcoma_csrf"
        # an EHR frames the SMART app cross-site: the cookie must then be sent in the frame
        self.same_site = "None" if (secure and framed) else "Lax"

    def token_for(self, cookie: str) -> str:
        return hmac.new(self._key, cookie.encode("ascii"), hashlib.sha256).hexdigest()

    def valid(self, cookie: str | None, token: str | None) -> bool:
        if not cookie or not token or not _COOKIE_VALUE.fullmatch(cookie) or not token.isascii():
            return False  # (compare_digest refuses non-ASCII text with an exception)
        return hmac.compare_digest(self.token_for(cookie), token.strip())

    def cookie_from(self, headers: Headers) -> str | None:
        value = cookie_parser(headers.get("cookie", "")).get(self.cookie_name)
        return value if value and _COOKIE_VALUE.fullmatch(value) else None

    def set_cookie_header(self, value: str) -> str:
        attrs = f"{self.cookie_name}={value}; Path=/; HttpOnly; SameSite={self.same_site}"
        return attrs + ("; Secure" if self.secure else "")


class HardeningMiddleware:
    """Origin check, CSRF tokens and security headers (see the module docstring)."""

    def __init__(self, app: Any, settings: Settings, secret: bytes) -> None:
        self.app = app
        base = settings.base_url or ""
        self.https = base.lower().startswith("https://")
        self.base_origin = origin_of(base) if base else None
        self.frame_ancestors = settings.frame_ancestors.strip() or "'none'"
        self.csrf = CsrfTokens(secret, secure=self.https,
                               framed=self.frame_ancestors != "'none'")
        # the headers of every response, made once (issue 13): the CSP around its nonce, and
        # the fixed headers as raw (name, value) pairs for the paths that may be cached or not
        self._csp = {docs: _csp_parts(docs, self.frame_ancestors) for docs in (False, True)}
        fixed = [(b"x-frame-options", b"DENY")] if self.frame_ancestors == "'none'" else []
        fixed += [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin")]
        private = [(b"cache-control", b"no-store"),
                   # no other site may load a patient response as an image, script or media
                   (b"cross-origin-resource-policy", b"same-origin")]
        hsts = [(b"strict-transport-security", b"max-age=31536000")] if self.https else []
        self._fixed = {cacheable: fixed + ([] if cacheable else private) + hsts
                       for cacheable in (False, True)}

    # ------------------------------------------------------------------ the request
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # the audit trail is keyed by the server's request id, never by one a client chose (it
        # could reuse another request's): the client's X-Request-ID is moved aside before the
        # request-context middleware makes the id, and echoed as X-Client-Request-ID
        client_rid = _take_client_request_id(scope)
        headers = Headers(scope=scope)
        if _remote_peer_in_local_mode(scope):
            await self._local_only(headers)(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        nonce = secrets.token_urlsafe(16)
        state["csp_nonce"] = nonce
        cookie = self.csrf.cookie_from(headers)
        new_cookie = None
        if cookie is None:
            cookie = new_cookie = secrets.token_urlsafe(32)
        state["csrf_token"] = self.csrf.token_for(cookie)
        path = scope.get("path", "")
        wrapped = self._sender(send, path, nonce, new_cookie, client_rid)

        if (scope.get("method", "GET") not in SAFE_METHODS and not _bearer(headers)
                and path not in _exempt_paths(scope)):
            if not self._same_origin(scope, headers):
                await self._cross_origin(headers)(scope, receive, wrapped)
                return
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype in FORM_TYPES:
                body, complete = await _read_body(receive)
                if not complete:
                    return
                receive = replay_body(body, receive)
                token = headers.get(CSRF_HEADER) or await _form_token(scope, body)
                if not self.csrf.valid(self.csrf.cookie_from(headers), token):
                    await self._csrf_refused(path, headers)(scope, receive, wrapped)
                    return
        await self.app(scope, receive, wrapped)

    def _same_origin(self, scope: dict[str, Any], headers: Headers) -> bool:
        """False when the request's Origin (else Referer) names another origin than ours."""
        given = headers.get("origin")
        if given is None:
            referer = headers.get("referer")
            if not referer:
                return True  # not sent by a browser, or stripped: the CSRF token still applies
            given = referer
        if given.strip().lower() == "null":
            return False  # an opaque origin (sandboxed frame, data: URL) is never ours
        theirs = origin_of(given)
        if theirs is None:
            return False
        ours = {o for o in (self.base_origin,
                            origin_of(f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"))
                if o}
        return theirs in ours

    def _csrf_refused(self, path: str, headers: Headers) -> Response:
        if "text/html" in headers.get("accept", ""):  # a browser: the page says what to do
            page = FORM_EXPIRED.format(back=html.escape(_back_link(path, headers)))
            return HTMLResponse(page, status_code=403)
        rid = uuid.uuid4().hex
        return problem(403, "missing or invalid CSRF token: a form post must come from the "
                       "service's own page (API clients: send the body as application/json, or "
                       "an Authorization header)", request_id=rid, headers={"X-Request-ID": rid})

    def _local_only(self, headers: Headers) -> Response:
        rid = uuid.uuid4().hex
        detail = ("this server runs for its local user only (no sign-in and no API keys are "
                  "configured): it answers requests from this computer only")
        h = {"X-Request-ID": rid, "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
             "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'"}
        return problem(403, detail, request_id=rid, headers=h)

    def _cross_origin(self, headers: Headers) -> Response:
        rid = uuid.uuid4().hex
        if "text/html" in headers.get("accept", ""):
            return HTMLResponse(CROSS_ORIGIN_PAGE, status_code=403, headers={"X-Request-ID": rid})
        return problem(403, "cross-origin request refused: a state-changing request from a page "
                       "of another origin (Origin or Referer header) needs an Authorization header",
                       request_id=rid, headers={"X-Request-ID": rid})

    # ------------------------------------------------------------------ the response
    def _sender(self, send: Any, path: str, nonce: str, new_cookie: str | None,
                client_rid: str | None) -> Any:
        async def wrapped(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                h = MutableHeaders(scope=message)
                self._add_headers(h, path, nonce)
                if client_rid:
                    h["X-Client-Request-ID"] = client_rid
                if new_cookie and h.get("content-type", "").startswith("text/html"):
                    h.append("set-cookie", self.csrf.set_cookie_header(new_cookie))
            await send(message)

        return wrapped

    def _add_headers(self, h: MutableHeaders, path: str, nonce: str) -> None:
        head, tail = self._csp[path in DOCS_PATHS]  # (ReDoc injects styles, runs a blob: worker)
        raw = h.raw
        present = {k for k, _ in raw}
        if b"content-security-policy" not in present:
            raw.append((b"content-security-policy", head + nonce.encode("latin-1") + tail))
        cacheable = path in CACHEABLE_PATHS or path.startswith(CACHEABLE_PREFIXES)
        for name, value in self._fixed[cacheable]:
            if name in present:  # set by the route: replaced, as h[name] = value would
                h[name.decode("latin-1")] = value.decode("latin-1")
            else:
                raw.append((name, value))


def _csp_parts(docs: bool, frame_ancestors: str) -> tuple[bytes, bytes]:
    """The Content-Security-Policy before and after its per-request script nonce."""
    style = "'self' 'unsafe-inline'" if docs else "'self'"
    worker = "'self' blob:" if docs else "'self'"
    head = "default-src 'self'; script-src 'self' 'nonce-"
    tail = (f"'; style-src {style}; img-src 'self' data:; font-src 'self'; connect-src 'self'; "
            f"worker-src {worker}; object-src 'none'; base-uri 'none'; "
            f"frame-ancestors {frame_ancestors}")
    return head.encode("latin-1"), tail.encode("latin-1")


def _bearer(headers: Headers) -> bool:
    """The request carries a bearer credential (an API key, a CDS Hooks JWT): a browser never
    adds one by itself, so it is no ambient credential. Other schemes are: a browser sends
    ``Basic`` or ``Negotiate`` to a site (a reverse proxy's sign-in) with every request,
    cross-site form posts included, so they do not skip the Origin and CSRF checks."""
    scheme = headers.get("authorization", "").strip().partition(" ")[0]
    return scheme.lower() == "bearer"


class RefusalHeaders:
    """The security headers on answers made outside :class:`HardeningMiddleware` (the Host
    refusal, the body-size refusal): outermost, it adds them to a response that has none
    (no ``X-Content-Type-Options``), and leaves every other response as it is."""

    def __init__(self, app: Any, frame_ancestors: str = "'none'") -> None:
        self.app = app
        self.frame_ancestors = frame_ancestors.strip() or "'none'"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def wrapped(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                h = MutableHeaders(scope=message)
                if "x-content-type-options" not in h:
                    h["Content-Security-Policy"] = (
                        f"default-src 'none'; frame-ancestors {self.frame_ancestors}")
                    if self.frame_ancestors == "'none'":
                        h["X-Frame-Options"] = "DENY"
                    h["X-Content-Type-Options"] = "nosniff"
                    h["Referrer-Policy"] = "same-origin"
                    h["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, wrapped)


def _remote_peer_in_local_mode(scope: dict[str, Any]) -> bool:
    """The app runs in local mode (no sign-in, no API keys: every request is the local user)
    and the peer is not this computer. ``serve`` binds 127.0.0.1 then, but the ASGI app run by
    another server (uvicorn or gunicorn on 0.0.0.0) would be open to the network: the Host
    allow-list checks a header the attacker writes. A peer that is not an IP address (a test
    client, a Unix socket) is not refused."""
    import ipaddress

    state = getattr(scope.get("app"), "state", None)
    identity = getattr(state, "identity", None)
    if identity is None or getattr(identity, "mode", None) != "local":
        return False
    client = scope.get("client")
    if not client:
        return False
    try:
        ip = ipaddress.ip_address(str(client[0]).split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return not (ip.is_loopback or (mapped is not None and mapped.is_loopback))


def _exempt_paths(scope: dict[str, Any]) -> Any:
    """Paths whose unsafe requests prove themselves otherwise (``app.state.csrf_exempt_paths``,
    e.g. an OpenID Connect ``form_post`` callback, checked by its signed ``state``)."""
    app = scope.get("app")
    return getattr(getattr(app, "state", None), "csrf_exempt_paths", ()) or ()


_CLIENT_RID = re.compile(r"[A-Za-z0-9-]{1,64}")


def _take_client_request_id(scope: dict[str, Any]) -> str | None:
    """Remove the client's ``X-Request-ID`` from the request; return it when it is a short
    token (to echo), else None."""
    given = None
    kept = []
    for k, v in scope.get("headers") or []:
        if k == b"x-request-id":
            given = v.decode("latin-1")
        else:
            kept.append((k, v))
    if given is None:
        return None
    scope["headers"] = kept
    return given if _CLIENT_RID.fullmatch(given) else None


async def _read_body(receive: Any) -> tuple[bytes, bool]:
    """The whole request body (already capped by the body-size middleware outside)."""
    chunks: list[bytes] = []
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return b"", False
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body", False):
            return b"".join(chunks), True


def replay_body(body: bytes, receive: Any) -> Any:
    """An ASGI ``receive`` that hands the app ``body`` (already read by a middleware) once, then
    the client's further messages (a disconnect)."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        msg: dict[str, Any] = await receive()
        return msg

    return replay


async def _form_token(scope: dict[str, Any], body: bytes) -> str | None:
    """The ``csrf_token`` field of a buffered form body (None when absent or unparsable)."""
    async def once() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    request = Request(scope, once)
    try:
        async with request.form() as form:
            value = form.get(CSRF_FIELD)
    except Exception:  # a malformed body: no token (the route reports the body itself)
        return None
    return value if isinstance(value, str) else None


def _back_link(path: str, headers: Headers) -> str:
    """Where the 'form expired' page sends the user: the page the form was on when it is ours,
    else the form's own page."""
    referer = headers.get("referer", "")
    host = headers.get("host", "")
    parts = urlsplit(referer) if referer else None
    if (parts is not None and parts.netloc == host and parts.path.startswith("/")
            and not parts.path.startswith("//")):  # (never a link to another host)
        return parts.path + (f"?{parts.query}" if parts.query else "")
    for suffix in ("/decision", "/what-if"):
        if path.endswith(suffix):
            return path[: -len(suffix)]
    return path if path.startswith("/") and not path.startswith("//") else "/"


def csp_nonce(request: Request) -> str:
    """This request's script nonce ("" outside the hardening middleware)."""
    return str(getattr(request.state, "csp_nonce", ""))


def csrf_token(request: Request) -> str:
    """This browser's CSRF token ("" outside the hardening middleware)."""
    return str(getattr(request.state, "csrf_token", ""))


def install(app: FastAPI, settings: Settings) -> None:
    """Add the host allow-list and :class:`HardeningMiddleware` to ``app`` (call once, in
    ``create_app``, before the body-size limit is added so that it stays outermost), and keep
    credentials and patient ids out of the logs (``log_privacy``)."""
    log_privacy.install()
    app.add_middleware(HardeningMiddleware, settings=settings,
                       secret=load_secret_key(settings.data_dir))
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.hosts)

"""Reading a CDS Hooks client's FHIR server without becoming a proxy for its caller (issue 12).

A CDS Hooks request names the server to read (``fhirServer``) and the token to read it with
(``fhirAuthorization``). Both come from whoever holds a valid client JWT, so the server is read
only when it is on that client's allow-list (``fhir_servers`` in the clients file), compared as
parsed URLs: scheme, host and port exactly, then a path prefix on segment boundaries (a bare
string prefix let ``:1845`` match ``:18451``). Outside development mode only ``https`` is read.
Redirects are never followed and a search's ``next`` page is read only under the same server
prefix, so the access token never leaves the origin the client's entry names. Without an access
token nothing is fetched unless the entry says ``"fhir_without_token": true``.

One hook's fetches run concurrently on the event loop (httpx's asynchronous client: nothing
blocks other requests), under a total deadline (``SARCOMA_CDS_FHIR_DEADLINE``) and a size cap
per response (``SARCOMA_CDS_FHIR_MAX_BYTES``, read as a stream and dropped past the cap). What
could not be read is named by prefetch key only: no error text reveals a host, a port or why a
connection failed (that would make the service a port scanner), and the reason goes to the log
as an exception class name only (never a URL, a patient id or a token).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx

log = logging.getLogger("sarcoma_cds.service.fhir_fetch")

#: What cards, gaps and problems say when a FHIR server could not be read (nothing more).
COULD_NOT_READ = "the EHR's FHIR server could not be read"
NO_SERVER = "no FHIR server to fetch it from"
MAX_PAGES = 5
_DEFAULT_PORTS = {"http": 80, "https": 443}
_BAD_PATH = ("%2e", "%2f", "%5c", "\\")


class NotAllowed(ValueError):
    """A FHIR server URL that is malformed or not on the allow-list."""


@dataclass(frozen=True)
class ServerPrefix:
    """A FHIR server base as a parsed URL: ``scheme``, ``host`` (lower case), ``port`` (explicit
    or the scheme's default) and ``path`` (no trailing slash; ``""`` for the root)."""

    scheme: str
    host: str
    port: int
    path: str

    def covers(self, other: ServerPrefix) -> bool:
        """True when ``other`` is this server, or a path under it (on a segment boundary)."""
        if (self.scheme, self.host, self.port) != (other.scheme, other.host, other.port):
            return False
        return other.path == self.path or other.path.startswith(self.path + "/")

    def url(self, relative: str = "") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        base = f"{self.scheme}://{host}:{self.port}{self.path}"
        return base + "/" + relative if relative else base


def parse_server(url: str, *, allow_http: bool) -> ServerPrefix:
    """``url`` as a :class:`ServerPrefix`, parsed the way the HTTP client will parse it; raises
    :class:`NotAllowed` for anything that is not a plain ``https`` (or, in development mode,
    ``http``) URL: user info, query, fragment, dot segments, encoded slashes, no host."""
    if not isinstance(url, str) or not url or len(url) > 2000 or any(c in url for c in " \t\r\n"):
        raise NotAllowed("not a URL")
    try:
        u = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise NotAllowed("not a URL") from None
    allowed = ("https", "http") if allow_http else ("https",)
    if u.scheme not in allowed:
        raise NotAllowed("scheme not allowed")
    if not u.host or u.userinfo or u.query or u.fragment:
        raise NotAllowed("only scheme, host, port and path are allowed")
    raw_path = u.raw_path.decode("ascii", "replace").split("?", 1)[0]
    if any(b in raw_path.lower() for b in _BAD_PATH):
        raise NotAllowed("encoded separators in the path")
    segments = u.path.split("/")
    if any(s in (".", "..") for s in segments):
        raise NotAllowed("dot segments in the path")
    port = u.port if u.port is not None else _DEFAULT_PORTS[u.scheme]
    return ServerPrefix(u.scheme, u.host.lower(), port, u.path.rstrip("/"))


@dataclass(frozen=True)
class FhirPolicy:
    """What one CDS client may have the service read: its allow-listed FHIR servers, whether a
    fetch without an access token is allowed, and whether ``http`` is (development mode)."""

    servers: tuple[ServerPrefix, ...] = ()
    without_token: bool = False
    allow_http: bool = False

    def server_for(self, fhir_server: Any) -> ServerPrefix:
        """The requested server when an allow-list entry covers it; else :class:`NotAllowed`."""
        want = parse_server(fhir_server, allow_http=self.allow_http)
        if not any(s.covers(want) for s in self.servers):
            raise NotAllowed("not on the client's allow-list")
        return want


@dataclass
class FetchResult:
    """What the fetch of one hook's missing prefetch keys gave.

    ``bundles``: key -> searchset Bundle (or None: the patient does not exist) for every key read
    in full; ``failed``: keys not read (whatever the reason: refused, unreachable, too large, past
    the deadline); ``partial``: keys of which only the first pages were read; ``not_fetchable``:
    why nothing was fetched at all (no server, not allowed, no token), else None."""

    bundles: dict[str, Any] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)
    not_fetchable: str | None = None

    @property
    def incomplete(self) -> list[str]:
        """Keys whose resources were not all read."""
        return [*self.failed, *self.partial]


class _ReadFailed(Exception):
    pass


def _auth_header(auth: Any) -> str | None:
    if isinstance(auth, dict) and isinstance(auth.get("access_token"), str) and auth[
            "access_token"].strip():
        kind = auth.get("token_type") if isinstance(auth.get("token_type"), str) else "Bearer"
        return f"{kind or 'Bearer'} {auth['access_token'].strip()}"
    return None


def _entries(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, dict):
        return []
    if value.get("resourceType") == "Bundle":
        return [e for e in value.get("entry") or []
                if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
    if isinstance(value.get("resourceType"), str):
        return [{"resource": value}]
    return []


async def _read_json(client: httpx.AsyncClient, url: str, headers: dict[str, str],
                     max_bytes: int, not_found_ok: bool) -> Any:
    async with client.stream("GET", url, headers=headers) as r:
        if r.status_code == 404 and not_found_ok:
            return None
        if r.status_code != 200:
            raise _ReadFailed(f"status {r.status_code}")
        if r.headers.get("content-encoding", "identity").lower() not in ("identity", ""):
            raise _ReadFailed("compressed answer")  # asked for identity: no decompression bombs
        length = r.headers.get("content-length")
        if length and length.isdigit() and int(length) > max_bytes:
            raise _ReadFailed("too large")
        buf = bytearray()
        async for chunk in r.aiter_raw():
            buf += chunk
            if len(buf) > max_bytes:
                raise _ReadFailed("too large")
    try:
        if len(buf) > 64 * 1024:  # parse large answers off the event loop
            return await anyio.to_thread.run_sync(json.loads, bytes(buf))
        return json.loads(bytes(buf))
    except ValueError:
        raise _ReadFailed("not JSON") from None


async def _read_key(client: httpx.AsyncClient, server: ServerPrefix, key: str, path: str,
                    headers: dict[str, str], max_bytes: int, out: FetchResult,
                    got: dict[str, list[dict[str, Any]]]) -> None:
    url = server.url(path)
    entries = got.setdefault(key, [])
    for _ in range(MAX_PAGES):
        data = await _read_json(client, url, headers, max_bytes,
                                not_found_ok=path.startswith("Patient/"))
        if data is None:
            out.bundles[key] = None
            return
        if not isinstance(data, dict):
            raise _ReadFailed("not a FHIR resource")
        entries.extend(_entries(data))
        links: list[Any] = data["link"] if isinstance(data.get("link"), list) else []
        nxt = [lk.get("url") for lk in links
               if isinstance(lk, dict) and lk.get("relation") == "next"]
        if not nxt or not isinstance(nxt[0], str):
            break
        try:  # the next page only from under the same server: the token goes nowhere else
            page = parse_server(nxt[0].split("?", 1)[0], allow_http=server.scheme == "http")
        except NotAllowed:
            break
        if not server.covers(page):
            break
        url = page.url() + ("?" + nxt[0].split("?", 1)[1] if "?" in nxt[0] else "")
    out.bundles[key] = {"resourceType": "Bundle", "type": "searchset", "entry": entries}


async def fetch_missing(req: Mapping[str, Any], paths: Mapping[str, str], policy: FhirPolicy, *,
                        deadline_s: float, timeout_s: float, max_bytes: int) -> FetchResult:
    """Fetch the prefetch keys in ``paths`` (key -> relative FHIR query) from the request's
    ``fhirServer``, within the policy, the deadline and the size cap. Never raises for a server
    that misbehaves: what could not be read is listed in the result."""
    out = FetchResult()
    if not paths:
        return out
    fhir_server = req.get("fhirServer")
    if not isinstance(fhir_server, str) or not fhir_server:
        out.not_fetchable = NO_SERVER
        return out
    try:
        server = policy.server_for(fhir_server)
    except NotAllowed as e:
        log.info("fhirServer refused: %s", e)
        out.not_fetchable = "the fhirServer given is not on this client's allow-list"
        return out
    auth = _auth_header(req.get("fhirAuthorization"))
    if auth is None and not policy.without_token:
        out.not_fetchable = "no fhirAuthorization access token to fetch it with"
        return out
    headers = {"Accept": "application/fhir+json", "Accept-Encoding": "identity"}
    if auth is not None:
        headers["Authorization"] = auth
    got: dict[str, list[dict[str, Any]]] = {}
    timeout = httpx.Timeout(min(timeout_s, deadline_s))
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
    async with httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False) as client:
        tasks = {asyncio.ensure_future(
            _read_key(client, server, k, p, headers, max_bytes, out, got)): k
            for k, p in paths.items()}
        try:
            done, pending = await asyncio.wait(tasks, timeout=deadline_s)
        finally:  # past the deadline, or the caller went away: stop every fetch
            for t in tasks:
                t.cancel()
        await asyncio.wait(tasks)
    for t, key in tasks.items():
        if t in done and not t.cancelled() and t.exception() is None:
            continue
        reason = ("deadline" if t in pending or t.cancelled()
                  else type(t.exception()).__name__)
        log.info("FHIR fetch of prefetch key %s not read in full: %s", key, reason)
        if got.get(key):  # the pages read before the deadline or the oversized page are kept
            out.bundles[key] = {"resourceType": "Bundle", "type": "searchset", "entry": got[key]}
            out.partial.append(key)
        else:
            out.failed.append(key)
    return out

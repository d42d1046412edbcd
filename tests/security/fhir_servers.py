"""Real local HTTP servers for the CDS Hooks attack tests (SSRF, denial of service): each records
who contacted it, on which path and with which Authorization header, and can be told to answer
slowly (block on a threading.Event), hugely, with a redirect or with a ``next`` link elsewhere."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent.parent))
from conftest_service import load_fixture_bundle


def split_fixture(name: str = "gist-pdgfra-d842v") -> dict[str, Any]:
    """A fixture bundle as the answers of the three required prefetch searches."""
    res = [e["resource"] for e in load_fixture_bundle(name)["entry"]]

    def sb(rt: str) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "searchset",
                "entry": [{"resource": r} for r in res if r["resourceType"] == rt]}

    return {"/Patient/p1": next(r for r in res if r["resourceType"] == "Patient"),
            "/Condition?patient=p1": sb("Condition"),
            "/Observation?patient=p1&category=laboratory": sb("Observation")}


class Recorder:
    """A local HTTP server: ``hits`` lists (path, Authorization header) of every request."""

    def __init__(self, prefix: str = "/fhir") -> None:
        self.prefix = prefix
        self.hits: list[tuple[str, str | None]] = []
        self.routes: dict[str, Any] = {}  # path after the prefix -> JSON body
        self.gate: threading.Event | None = None  # set: answers wait for it
        self.entered = threading.Event()  # set when a request has arrived
        self.handler: Callable[[BaseHTTPRequestHandler], bool] | None = None
        rec = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:
                rec.hits.append((self.path, self.headers.get("Authorization")))
                rec.entered.set()
                if rec.gate is not None:
                    rec.gate.wait(30)
                if rec.handler is not None and rec.handler(self):
                    return
                rel = self.path[len(rec.prefix):] if self.path.startswith(rec.prefix) else None
                body = rec.routes.get(rel) if rel is not None else None
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)

    @property
    def contacted(self) -> bool:
        return bool(self.hits)

    def auth_seen(self) -> set[str | None]:
        return {a for _, a in self.hits}


@contextmanager
def recorder(prefix: str = "/fhir", routes: dict[str, Any] | None = None) -> Iterator[Recorder]:
    r = Recorder(prefix)
    r.routes.update(routes or {})
    r.thread.start()
    try:
        yield r
    finally:
        if r.gate is not None:
            r.gate.set()
        r.server.shutdown()
        r.server.server_close()

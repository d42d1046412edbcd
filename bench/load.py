"""Load test of the service as a busy EHR would load it: prints its figures; it is not a test.

Starts its own server on loopback (``sarcoma-cds serve``), drives it with N concurrent clients
posting varied realistic patients for a bounded time and count, stops it, then checks every
answered request against the audit store: a 200 whose audit record is missing is counted (it
must be 0). Prints requests/s, p50/p95/p99 latency, errors, missing audit records and the
machine's load average (the machine is shared; read the figures with it).

    python bench/load.py --mode rest --concurrency 32 --seconds 20
    python bench/load.py --mode cds --concurrency 32 --seconds 20  # patient-view with prefetch
    python bench/load.py --mode rest --db-url postgresql+psycopg://u:p@127.0.0.1:5432/db
    python bench/load.py --mode rest --kill-after 5   # SIGKILL the server mid-load:
                                                      # every answer audited?
    python bench/load.py --workers 2 ...    # passed to `sarcoma-cds serve --workers`
                                            # (default: serve's own, one per core)

Loopback only (the server binds 127.0.0.1); bounded by --seconds and --max-requests. The
clients use aiohttp (the ``dev`` extra): the load generator shares the machine with the server,
so it must cost little per request. Every 200 is checked against the audit store after the run:
REST by its ``X-Audit-ID``, CDS Hooks by the audit id in its cards' links.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).parent))
from patients import patients

ROOT = Path(__file__).parent.parent
FHIR_FIXTURES = ROOT / "tests" / "fixtures" / "fhir"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Client:
    """A CDS client with its own ES384 key (written to the server's trusted-clients file)."""

    def __init__(self) -> None:
        import jwt
        from cryptography.hazmat.primitives.asymmetric import ec

        self._jwt = jwt
        self.key = ec.generate_private_key(ec.SECP384R1())
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": "load-1", "alg": "ES384", "use": "sig"})
        self.jwks = {"keys": [jwk]}
        self.iss = "https://ehr.load.test"

    def token(self, aud: str) -> str:
        now = int(time.time())
        claims = {
            "iss": self.iss,
            "aud": aud,
            "iat": now,
            "exp": now + 300,
            "jti": str(uuid.uuid4()),
            "sub": "load-client",
        }
        return str(self._jwt.encode(claims, self.key, algorithm="ES384", headers={"kid": "load-1"}))


def _hook_requests() -> list[str]:
    """patient-view request templates with prefetch, one per FHIR fixture record; ``@PID@`` and
    ``@BIRTH@`` are replaced per request, so every request is about another patient."""
    out = []
    for f in sorted(FHIR_FIXTURES.glob("*.json")):
        bundle = json.loads(f.read_text())
        entries = [
            e["resource"]
            for e in bundle.get("entry", [])
            if isinstance(e, dict) and "resource" in e
        ]
        patient = next(
            (r for r in entries if r.get("resourceType") == "Patient"),
            {"resourceType": "Patient", "id": "p1"},
        )
        pid = patient.get("id", "p1")
        patient = {**patient, "birthDate": "@BIRTH@"}

        def search(kind: str, entries: list[dict[str, Any]] = entries) -> dict[str, Any]:
            return {"resourceType": "Bundle", "type": "searchset",
                    "entry": [{"resource": r} for r in entries if r.get("resourceType") == kind]}

        req = {
            "hook": "patient-view",
            "hookInstance": "@HOOK@",
            "context": {"userId": "Practitioner/1", "patientId": pid},
            "prefetch": {
                "patient": patient,
                "conditions": search("Condition"),
                "observations": search("Observation"),
            },
        }
        text = json.dumps(req).replace(f'"Patient/{pid}"', '"Patient/@PID@"')
        text = text.replace(f'"patientId": "{pid}"', '"patientId": "@PID@"')
        text = text.replace(f'"id": "{pid}"', '"id": "@PID@"')
        out.append(text)
    return out


def _hook_body(template: str, rng: random.Random) -> bytes:
    birth = f"{rng.randint(1935, 2004)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    return (template.replace("@PID@", uuid.uuid4().hex[:12]).replace("@BIRTH@", birth)
            .replace("@HOOK@", str(uuid.uuid4())).encode())


_AUDIT_IN_LINK = re.compile(rb"/cases/([0-9a-f-]{36})")


def _serve(
    args: argparse.Namespace, port: int, data: Path, client: _Client
) -> subprocess.Popen[bytes]:
    env = dict(os.environ, SARCOMA_CDS_DATA_DIR=str(data), SARCOMA_CDS_BASE_URL=f"http://127.0.0.1:{port}")
    clients = data / "clients.json"
    clients.write_text(json.dumps({"clients": [{"iss": client.iss, "jwks": client.jwks}]}))
    env["SARCOMA_CDS_CLIENTS"] = str(clients)
    if args.db:
        env["DATABASE_URL"] = args.db
    env.pop("SARCOMA_CDS_API_KEYS", None)
    # the per-client rate limit (600/min by default) would answer most of the load 429: off
    # unless --rate-limit asks for it (its cost is then part of the figures)
    env["SARCOMA_CDS_RATE_LIMIT"] = str(args.rate_limit)
    exe = Path(sys.executable).parent / "sarcoma-cds"
    cmd = [str(exe), "serve", "--host", "127.0.0.1", "--port", str(port)]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


async def _wait_ready(base: str, timeout: float = 60.0) -> None:
    import aiohttp

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as c:
        while time.monotonic() < deadline:
            try:
                async with c.get(base + "/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit("the server did not start")


async def _drive(args: argparse.Namespace, base: str, client: _Client,
                 kill: subprocess.Popen[bytes] | None) -> tuple[list[float], int, list[str], int]:
    """Run the clients; returns (latencies of 200s, errors, audit ids of the 200s, 200s)."""
    import aiohttp

    facts = [json.dumps(f).encode() for f in patients(2000, seed=args.seed)]
    hooks = _hook_requests()
    rng = random.Random(args.seed)
    latencies: list[float] = []
    audit_ids: list[str] = []
    errors = 0
    ok = 0
    sent = 0
    t_start = time.monotonic()
    stop_at = t_start + args.seconds
    killed = False
    json_type = {"Content-Type": "application/json"}
    url = base + ("/recommendations" if args.mode == "rest"
                  else "/cds-services/sarcoma-treatment")

    async def one(c: aiohttp.ClientSession) -> None:
        nonlocal errors, ok
        if args.mode == "rest":
            body, headers = rng.choice(facts), json_type
        else:
            body = _hook_body(rng.choice(hooks), rng)
            headers = {**json_type, "Authorization": "Bearer " + client.token(url)}
        t0 = time.perf_counter()
        try:
            async with c.post(url, data=body, headers=headers) as r:
                data = await r.read()
                status = r.status
                audit = r.headers.get("X-Audit-ID", "")
        except (TimeoutError, aiohttp.ClientError):
            errors += 1
            return
        dt = time.perf_counter() - t0
        if status != 200:
            errors += 1
            return
        latencies.append(dt)
        ok += 1
        if args.mode == "cds":
            m = _AUDIT_IN_LINK.search(data)
            audit = m.group(1).decode() if m else ""
        audit_ids.append(audit)

    async def worker(c: aiohttp.ClientSession) -> None:
        nonlocal sent, killed
        while time.monotonic() < stop_at and sent < args.max_requests and not killed:
            sent += 1
            if kill is not None and time.monotonic() > t_start + args.kill_after:
                killed = True  # (requests in flight fail; no new ones are sent)
                os.killpg(kill.pid, signal.SIGKILL)
                break
            await one(c)

    conn = aiohttp.TCPConnector(limit=args.concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as c:
        await asyncio.gather(*(worker(c) for _ in range(args.concurrency)))
    return latencies, errors, audit_ids, ok


def _group_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the processes of a process group (Linux
    /proc): the server's cost per request, a figure that other load on the machine disturbs
    less than its latency."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # (fields after the command: state ppid pgrp ...)
            total += int(fields[11]) + int(fields[12])
    return total / tick


def _missing_audit(args: argparse.Namespace, data: Path, audit_ids: list[str]) -> int:
    """Answered requests without a committed audit record (read from the store after the server
    stopped): an answer without an audit id counts as missing too."""
    from sqlalchemy import select

    from sarcoma_cds.store import AuditStore
    from sarcoma_cds.store.models import AuditRecord

    url = args.db or f"sqlite:///{data / 'sarcoma-cds.sqlite3'}"
    store = AuditStore.open(url, run_migrations=False)
    try:
        found: set[str] = set()
        wanted = [a for a in audit_ids if a]
        with store.sessions() as s:
            for i in range(0, len(wanted), 500):
                found.update(s.scalars(select(AuditRecord.id)
                                       .where(AuditRecord.id.in_(wanted[i:i + 500]))))
        return sum(1 for a in audit_ids if a not in found)
    finally:
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=["rest", "cds"], default="rest")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--max-requests", type=int, default=200_000)
    ap.add_argument("--workers", type=int, default=None,
                    help="serve --workers (default: serve's own default, one per core)")
    ap.add_argument("--db-url", "--db", dest="db", default=None,
                    help="DATABASE_URL (default: a fresh SQLite file)")
    ap.add_argument(
        "--kill-after", type=float, default=None, help="SIGKILL the server after this many seconds"
    )
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--rate-limit", type=int, default=0,
                    help="SARCOMA_CDS_RATE_LIMIT for the server (default 0: off)")
    args = ap.parse_args()
    if args.db and urlsplit(args.db).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("--db-url: loopback databases only (127.0.0.1, localhost)")
    idle1, _, _ = os.getloadavg()

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    client = _Client()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        server = _serve(args, port, data, client)
        try:
            asyncio.run(_wait_ready(base))
            t0 = time.perf_counter()
            cpu0 = _group_cpu_s(server.pid)
            lat, errors, ids, _ok = asyncio.run(
                _drive(args, base, client, server if args.kill_after is not None else None))
            wall = time.perf_counter() - t0
            cpu = _group_cpu_s(server.pid) - cpu0
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(timeout=30)
        missing = _missing_audit(args, data, ids)
    ok = len(lat)
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [float("nan")] * 99
    load1, load5, _ = os.getloadavg()
    store = "PostgreSQL" if args.db else "SQLite"
    if args.kill_after is not None:
        print(
            f"server SIGKILLed after {args.kill_after:g} s; errors below are the requests in "
            "flight then"
        )
    print(
        f"{args.mode} x{args.concurrency} clients, {args.workers or 'default'} worker(s), "
        f"{store}, {wall:.1f} s: "
        f"{ok} answered ({ok / wall:,.0f}/s), {errors} errors"
    )
    print(
        f"latency p50 {q[49] * 1000:.1f} ms, p95 {q[94] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms"
    )
    if args.kill_after is None:
        print(f"server CPU: {cpu:.1f} s, {cpu / max(ok, 1) * 1000:.2f} ms per answered request")
    print(f"answered without a committed audit record: {missing} (must be 0)")
    print(
        f"load average: {idle1:.2f} (1 min) before the run; after it {load1:.2f} (1 min), "
        f"{load5:.2f} (5 min) on {os.cpu_count()} cores"
    )
    if missing:
        raise SystemExit(1)


if __name__ == "__main__":
    main()

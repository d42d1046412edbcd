"""Load test of the service as a busy EHR would load it: prints its figures; it is not a test.

Starts its own server on loopback (``sarcoma-cds serve``), drives it with N concurrent clients
posting varied realistic patients for a bounded time and count, stops it, then checks every
answered request against the audit store: a 200 whose audit record is missing is counted (it
must be 0). Prints requests/s, p50/p95/p99 latency, errors, missing audit records and the
machine's load average (the machine is shared; read the figures with it).

    python bench/load.py --mode rest --concurrency 32 --seconds 20
    python bench/load.py --mode cds --concurrency 32 --seconds 20  # patient-view with prefetch
    python bench/load.py --mode rest --db postgresql+psycopg://u:p@127.0.0.1:5432/db
    python bench/load.py --mode rest --kill-after 5   # SIGKILL the server mid-load:
                                                      # every answer audited?
    python bench/load.py --workers 2 ...               # passed to `sarcoma-cds serve --workers`

Loopback only (the server binds 127.0.0.1); bounded by --seconds and --max-requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
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


def _hook_requests() -> list[dict[str, Any]]:
    """patient-view requests with prefetch, one per FHIR fixture record (varied patients)."""
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

        def search(kind: str, entries: list[dict[str, Any]] = entries) -> dict[str, Any]:
            return {"resourceType": "Bundle", "type": "searchset",
                    "entry": [{"resource": r} for r in entries if r.get("resourceType") == kind]}

        out.append(
            {
                "hook": "patient-view",
                "context": {"userId": "Practitioner/1", "patientId": pid},
                "prefetch": {
                    "patient": patient,
                    "conditions": search("Condition"),
                    "observations": search("Observation"),
                },
            }
        )
    return out


def _serve(
    args: argparse.Namespace, port: int, data: Path, client: _Client
) -> subprocess.Popen[bytes]:
    env = dict(os.environ, SARCOMA_CDS_DATA_DIR=str(data), SARCOMA_CDS_BASE_URL=f"http://127.0.0.1:{port}")
    clients = data / "clients.json"
    clients.write_text(json.dumps({"clients": [{"iss": client.iss, "jwks": client.jwks}]}))
    env["SARCOMA_CDS_CLIENTS"] = str(clients)
    if args.db:
        env["DATABASE_URL"] = args.db
    exe = Path(sys.executable).parent / "sarcoma-cds"
    cmd = [
        str(exe),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(args.workers),
    ]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


async def _wait_ready(base: str, timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as c:
        while time.monotonic() < deadline:
            try:
                if (await c.get(base + "/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit("the server did not start")


async def _drive(args: argparse.Namespace, base: str, client: _Client,
                 kill: subprocess.Popen[bytes] | None) -> tuple[list[float], int, list[str], int]:
    """Run the clients; returns (latencies of 200s, errors, audit ids of REST 200s, CDS 200s)."""
    import httpx

    facts = patients(2000, seed=args.seed)
    hooks = _hook_requests()
    rng = random.Random(args.seed)
    latencies: list[float] = []
    audit_ids: list[str] = []
    errors = 0
    cds_ok = 0
    sent = 0
    stop_at = time.monotonic() + args.seconds
    killed = False

    async def one(c: httpx.AsyncClient) -> None:
        nonlocal errors, cds_ok, sent
        t0 = time.perf_counter()
        try:
            if args.mode == "rest":
                r = await c.post(base + "/recommendations", json=rng.choice(facts))
            else:
                req = dict(rng.choice(hooks), hookInstance=str(uuid.uuid4()))
                url = base + "/cds-services/sarcoma-treatment"
                r = await c.post(
                    url, json=req, headers={"Authorization": "Bearer " + client.token(url)}
                )
        except httpx.TransportError:
            errors += 1
            return
        dt = time.perf_counter() - t0
        if r.status_code == 200:
            latencies.append(dt)
            if args.mode == "rest":
                audit_ids.append(r.headers.get("X-Audit-ID", ""))
            else:
                cds_ok += 1
        else:
            errors += 1

    async def worker() -> None:
        nonlocal sent, killed
        async with httpx.AsyncClient(timeout=30.0) as c:
            while time.monotonic() < stop_at and sent < args.max_requests and not killed:
                sent += 1
                if kill is not None and time.monotonic() > stop_at - args.seconds + args.kill_after:
                    killed = True  # (requests in flight fail; no new ones are sent)
                    os.killpg(kill.pid, signal.SIGKILL)
                    break
                await one(c)

    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    return latencies, errors, audit_ids, cds_ok


def _missing_audit(args: argparse.Namespace, data: Path, audit_ids: list[str], cds_ok: int) -> int:
    """Answered requests without a committed audit record (read from the store after the server
    stopped)."""
    from sarcoma_cds.store import AuditStore

    url = args.db or f"sqlite:///{data / 'sarcoma-cds.sqlite3'}"
    store = AuditStore.open(url, run_migrations=False)
    try:
        if args.mode == "rest":
            return sum(1 for a in audit_ids if not a or store.get_record(a) is None)
        cds_records = sum(1 for r in store.iter_records() if r.get("interface") == "cds-hooks")
        return max(0, cds_ok - cds_records)
    finally:
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=["rest", "cds"], default="rest")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--max-requests", type=int, default=200_000)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--db", default=None, help="DATABASE_URL (default: a fresh SQLite file)")
    ap.add_argument(
        "--kill-after", type=float, default=None, help="SIGKILL the server after this many seconds"
    )
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    client = _Client()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        server = _serve(args, port, data, client)
        try:
            asyncio.run(_wait_ready(base))
            t0 = time.perf_counter()
            lat, errors, ids, cds_ok = asyncio.run(
                _drive(args, base, client, server if args.kill_after is not None else None))
            wall = time.perf_counter() - t0
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(timeout=30)
        missing = _missing_audit(args, data, ids, cds_ok)
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
        f"{args.mode} x{args.concurrency} clients, {args.workers} worker(s), {store}, {wall:.1f} "
        "s: "
        f"{ok} answered ({ok / wall:,.0f}/s), {errors} errors"
    )
    print(
        f"latency p50 {q[49] * 1000:.1f} ms, p95 {q[94] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms"
    )
    print(f"answered without a committed audit record: {missing} (must be 0)")
    print(
        f"load average during the run: {load1:.2f} (1 min), {load5:.2f} (5 min) on "
        f"{os.cpu_count()} cores"
    )
    if missing:
        raise SystemExit(1)


if __name__ == "__main__":
    main()

"""What a durable commit costs: audit rows written one per transaction and in group commits,
with SQLite ``synchronous=FULL`` vs ``NORMAL`` (WAL mode) and PostgreSQL
``synchronous_commit=on`` vs ``off``. Prints its figures; it is not a test (issue 13).

    python bench/fsync_cost.py                      # SQLite in a temporary directory
    python bench/fsync_cost.py --db-url postgresql+psycopg://u:p@127.0.0.1:5432/db

The service keeps FULL / on: an answered request's audit record must survive a power cut, and
group commit makes that fsync cheap by sharing it among the batch (docs/service.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).parent))
from patients import patients

from sarcoma_cds import load_kb, parse_facts
from sarcoma_cds.domain.engine import recommend
from sarcoma_cds.store import AuditStore
from sarcoma_cds.store.group_commit import GroupCommitWriter


def run(url: str, setting: str, n: int, batch: int) -> float:
    """Microseconds per row for ``n`` rows committed ``batch`` at a time."""
    store = AuditStore.open(url)

    @event.listens_for(store.engine, "connect")
    def _set(dbapi_conn, _rec):  # type: ignore[no-untyped-def]
        cur = dbapi_conn.cursor()
        cur.execute(setting)
        cur.close()
        if store.engine.dialect.name == "postgresql":
            dbapi_conn.commit()

    store.engine.dispose()  # new connections get the setting
    kb = load_kb()
    facts = [parse_facts(f) for f in patients(200, seed=3)]
    recs = [recommend(kb, f) for f in facts]
    writer = GroupCommitWriter(store.sessions)
    rows = [store.build_record(recs[i % 200], facts[i % 200], interface="rest", caller="bench",
                               request_id=f"b{i}") for i in range(n)]
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        writer.write_batch([(r, (), None) for r in rows[i:i + batch]])
    dt = time.perf_counter() - t0
    store.close()
    return dt / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db-url", default=None)
    ap.add_argument("--n", type=int, default=400)
    args = ap.parse_args()
    load1, _, _ = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        if args.db_url:
            url = args.db_url
            settings = ["SET synchronous_commit = on", "SET synchronous_commit = off"]
        else:
            url = f"sqlite:///{Path(tmp) / 'fsync.sqlite3'}"
            settings = ["PRAGMA synchronous=FULL", "PRAGMA synchronous=NORMAL"]
        for setting in settings:
            for batch in (1, 8, 32, 128):
                us = run(url, setting, args.n, batch)
                print(f"{setting:32s} batch {batch:4d}: {us:8.0f} us per row "
                      f"({us * batch / 1000:6.2f} ms per commit)")
    print(f"load average {load1:.2f} (1 min) before the run, {os.getloadavg()[0]:.2f} after, "
          f"on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()

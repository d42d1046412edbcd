"""Before and after, side by side: ``bench/load.py`` against the code of an older commit (served
from an extracted copy of its ``src``) and against this checkout, run after run, printed as a
Markdown table with the load average of each run. Prints figures; it is not a test (issue 13).

    python bench/side_by_side.py --base 2ce1066 --seconds 10
    python bench/side_by_side.py --base 2ce1066 --pg postgresql+psycopg://u:p@127.0.0.1:5432/db

Each pair runs the old code first, then the new, so that both see about the same machine load.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).parent.parent

_FIGURES = re.compile(r"\((?P<rps>[\d,]+)/s\), (?P<err>\d+) errors")
_LAT = re.compile(r"p50 (?P<p50>[\d.]+) ms, p95 (?P<p95>[\d.]+) ms, p99 (?P<p99>[\d.]+) ms")
_CPU = re.compile(r"(?P<cpu>[\d.]+) ms per answered request")
_LOAD = re.compile(r"after it (?P<load>[\d.]+) \(1 min\)")
_MISSING = re.compile(r"committed audit record: (?P<missing>\d+)")


def _run(args: list[str], pythonpath: str | None) -> str:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    else:
        env.pop("PYTHONPATH", None)
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "load.py"), *args], env=env,
                         capture_output=True, text=True, timeout=600)
    return out.stdout + out.stderr


def _ms(value: str) -> str:
    v = float(value)
    return f"{v:.1f}" if v < 10 else f"{v:,.0f}"


def _cell(text: str) -> str:
    m, lat, cpu = _FIGURES.search(text), _LAT.search(text), _CPU.search(text)
    load, missing = _LOAD.search(text), _MISSING.search(text)
    if not (m and lat):
        return "failed: " + " ".join(text.split())[-200:]
    p50, p95, p99 = (_ms(lat[k]) for k in ("p50", "p95", "p99"))
    cell = f"{m['rps']}/s, p50 {p50} ms, p95 {p95} ms, **p99 {p99} ms**"
    if cpu:
        cell += f", {cpu['cpu']} ms CPU/req"
    if m["err"] != "0":
        cell += f", {m['err']} errors"
    if missing and missing["missing"] != "0":
        cell += f", **{missing['missing']} without a record**"
    return cell + (f" (load {load['load']})" if load else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="2ce1066", help="the commit to compare against")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--pg", default=None, help="a loopback PostgreSQL URL for the PostgreSQL rows")
    ap.add_argument("--pg-before", default=None,
                    help="the PostgreSQL URL for the old code (its own database or schema, e.g. "
                         "...?options=-csearch_path%%3Dbase: a schema migrated by newer code "
                         "does not start older code); default: --pg")
    ap.add_argument("--only", default=None,
                    help="comma-separated run names (rest32, cds32, rest1, cds1, cds32w1, "
                         "rest32w1, pgrest32, pgcds32)")
    a = ap.parse_args()
    runs = [("rest32", "REST x32, SQLite", ["--mode", "rest", "--concurrency", "32"]),
            ("cds32", "CDS patient-view x32, SQLite", ["--mode", "cds", "--concurrency", "32"]),
            ("rest1", "REST x1, SQLite", ["--mode", "rest", "--concurrency", "1"]),
            ("cds1", "CDS x1, SQLite", ["--mode", "cds", "--concurrency", "1"]),
            # the old code has one process; the new one, run with one worker as well
            ("cds32w1", "CDS x32, SQLite, after with 1 worker",
             ["--mode", "cds", "--concurrency", "32", "+", "--workers", "1"]),
            ("rest32w1", "REST x32, SQLite, after with 1 worker",
             ["--mode", "rest", "--concurrency", "32", "+", "--workers", "1"])]
    if a.pg:
        runs += [("pgrest32", "REST x32, PostgreSQL",
                  ["--mode", "rest", "--concurrency", "32", "--db-url", a.pg]),
                 ("pgcds32", "CDS x32, PostgreSQL",
                  ["--mode", "cds", "--concurrency", "32", "--db-url", a.pg])]
    old_pg = a.pg_before or a.pg
    if a.only:
        wanted = set(a.only.split(","))
        runs = [r for r in runs if r[0] in wanted]
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", a.base, "src"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        base_src = str(Path(tmp) / "src")
        print(f"| run | before ({a.base}) | after (this checkout) |")
        print("|---|---|---|")
        for _, label, args in runs:
            extra = args[args.index("+") + 1:] if "+" in args else []  # (new code only)
            args = [*(args[:args.index("+")] if extra else args), "--seconds", str(a.seconds)]
            old_args = [old_pg if x == a.pg else x for x in args]
            before = _cell(_run(old_args, base_src))
            after = _cell(_run([*args, *extra], None))
            print(f"| {label} | {before} | {after} |", flush=True)


if __name__ == "__main__":
    main()

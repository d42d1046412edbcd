"""Cohort benchmark: 1,000,000 synthetic patients end to end (Parquet -> report) with the
vectorised engine, against the per-patient engine on a 20,000-patient sample scaled up.

    .venv/bin/python bench/bench_cohort.py [--n 1000000] [--sample 20000] [--runs 3] \\
        [--engine polars]

The cohort is synthesised at full size (``synth(n, seed=7)``, vectorised: a few seconds for
the million; its time is printed but is not part of the benchmark) and written as
``sarcoma-cds synth --out cohort.parquet`` writes it (categorical facts typed as the contract's
vocabulary, the date as a date). Each timed run reads the Parquet file, validates, encodes,
evaluates, aggregates, writes patients.csv/.parquet, summary.json and report.html. The same
cohort with every column as text (as a CSV-derived Parquet file would be) is timed too.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from sarcoma_cds import load_kb
from sarcoma_cds.cohort.evaluate import evaluate, prepare
from sarcoma_cds.cohort.run import run_concordance
from sarcoma_cds.cohort.synth import synth, write


def _cpu() -> float:
    """CPU seconds of this process, all threads (user + system)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--sample", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--engine", default="polars")
    a = ap.parse_args()
    kb = load_kb()
    tmp = Path(tempfile.mkdtemp(prefix="bench-cohort-"))
    t = time.perf_counter()
    big = synth(a.n, seed=7, kb=kb)
    synth_s = time.perf_counter() - t
    cohort = tmp / "cohort.parquet"
    write(big, cohort)
    text_cohort = tmp / "cohort-text.parquet"
    big.write_parquet(text_cohort)
    print(
        f"synthesised {a.n:,} patients in {synth_s:.1f} s (written in "
        f"{time.perf_counter() - t - synth_s:.1f} s) -> {cohort}"
    )

    times, cpus = [], []
    for i in range(a.runs):
        t, c = time.perf_counter(), _cpu()
        s = run_concordance(cohort, tmp / f"out{i}", kb, engine=a.engine)
        times.append(time.perf_counter() - t)
        cpus.append(_cpu() - c)
        print(f"  run {i + 1}: {times[-1]:.2f} s, {cpus[-1]:.2f} CPU s  ({s['_line']})")
    vec = statistics.median(times)
    cpu = statistics.median(cpus)
    print(
        f"vectorised ({a.engine}) end to end, {a.n:,} patients: median {vec:.2f} s "
        f"= {a.n / vec:,.0f} patients/s; median {cpu:.2f} CPU s (all threads) = {cpu / vec:.1f} of "
        f"{os.cpu_count()} cores busy"
    )

    ttimes = []
    for i in range(a.runs):
        t = time.perf_counter()
        run_concordance(text_cohort, tmp / f"text{i}", kb, engine=a.engine)
        ttimes.append(time.perf_counter() - t)
    txt = statistics.median(ttimes)
    print(f"  the same with every column as text: median {txt:.2f} s = {a.n / txt:,.0f} patients/s")

    etimes = []
    for _ in range(a.runs):
        t = time.perf_counter()
        evaluate(prepare(cohort, kb), a.engine)
        etimes.append(time.perf_counter() - t)
    ev = statistics.median(etimes)
    print(
        f"vectorised ({a.engine}) read+validate+evaluate only (no files/report): median {ev:.2f} s "
        f"= {a.n / ev:,.0f} patients/s"
    )

    sample = big.head(a.sample)
    prep = prepare(sample, kb)
    ptimes = []
    for _ in range(max(1, min(a.runs, 2))):
        t = time.perf_counter()
        evaluate(prep, "python")
        ptimes.append(time.perf_counter() - t)
    per = statistics.median(ptimes)
    scaled = per * a.n / a.sample
    print(
        f"per-patient engine on {a.sample:,} patients: median {per:.2f} s = {a.sample / per:,.0f} "
        "patients/s; "
        f"scaled to {a.n:,}: {scaled:.1f} s"
    )
    print(
        f"speed-up vectorised vs per-patient: {scaled / vec:.1f}x end to end (files and report "
        "included "
        f"for the vectorised run only; {scaled / txt:.1f}x from the text-only file), "
        f"{scaled / ev:.0f}x evaluation only"
    )
    print(
        "targets (issue 5): the million in under 20 s: "
        f"{'met' if vec < 20 and a.n >= 1_000_000 else 'NOT met'} "
        f"({vec:.2f} s); at least 50x the per-patient throughput end to end: "
        f"{'met' if scaled / vec >= 50 else 'NOT met'} ({scaled / vec:.1f}x)"
    )


if __name__ == "__main__":
    main()

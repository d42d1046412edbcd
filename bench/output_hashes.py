"""Hashes of every cohort output file, to check that a speed change changes no output.

    .venv/bin/python bench/output_hashes.py > before.json   # on the old commit
    .venv/bin/python bench/output_hashes.py > after.json    # on the new one
    diff before.json after.json                             # no output: nothing changed

Two synthetic cohorts with invalid rows (one also with NULL and empty ``delivered`` lists) run
through the in-process engines (``--engines polars,duckdb,python``). Each engine's
patients.csv, invalid_rows.csv, report.html and summary.json (without its ``engine`` field) are
hashed as bytes, and patients.parquet by its content (as CSV text: the Parquet bytes may change
with writer settings while the data do not).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from pathlib import Path

import polars as pl

from sarcoma_cds import load_kb
from sarcoma_cds.cohort.run import run_concordance
from sarcoma_cds.cohort.synth import synth


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engines", default="polars,duckdb,python")
    a = ap.parse_args()
    kb = load_kb()
    tmp = Path(tempfile.mkdtemp(prefix="output-hashes-"))
    first = synth(50_000, seed=3, kb=kb, invalid_rate=0.05)
    n = pl.int_range(0, first.height)
    first = first.with_columns(
        pl.when(n % 97 == 0)
        .then(None)
        .when(n % 89 == 0)
        .then(pl.lit([], pl.List(pl.Utf8)))
        .otherwise(pl.col("delivered"))
        .alias("delivered")
    )
    cohorts = {"a": first, "b": synth(30_000, seed=5, kb=kb, invalid_rate=0.1)}
    out: dict[str, str] = {}
    for name, df in cohorts.items():
        src = tmp / f"{name}.parquet"
        df.write_parquet(src)
        for engine in a.engines.split(","):
            d = tmp / f"{name}-{engine}"
            run_concordance(src, d, kb, engine=engine)
            for f in ("patients.csv", "invalid_rows.csv", "report.html"):
                out[f"{name}/{engine}/{f}"] = _digest((d / f).read_bytes())
            s = json.loads((d / "summary.json").read_text())
            s.pop("engine", None)
            out[f"{name}/{engine}/summary.json"] = _digest(json.dumps(s, sort_keys=True).encode())
            p = pl.read_parquet(d / "patients.parquet").with_columns(
                pl.col(pl.Categorical).cast(pl.Utf8)
            )
            out[f"{name}/{engine}/patients.parquet (content)"] = _digest(p.write_csv().encode())
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

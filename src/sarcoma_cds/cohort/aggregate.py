"""Aggregates over evaluated patients: concordance by group, centre and year, top reasons,
completeness."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sarcoma_cds.cohort.compiler import CONCORDANCE
from sarcoma_cds.domain.facts import FACT_FIELDS
from sarcoma_cds.domain.knowledge import CompiledKB


def _counts(df: Any, by: str) -> dict[str, dict[str, int]]:
    """``df``: patients, or their counts per (..., concordance) in a ``len`` column (summed
    here)."""
    import polars as pl

    out: dict[str, dict[str, int]] = {}
    cnt = pl.col("len").sum() if "len" in df.columns else pl.len()
    t = df.filter(pl.col(by).is_not_null()).group_by(by, "concordance").agg(cnt.alias("len"))
    for key, conc, n in t.iter_rows():
        out.setdefault(str(key), {c: 0 for c in CONCORDANCE})[conc] = int(n)
    return dict(sorted(out.items()))


@dataclass
class Aggregates:
    """Everything the summary and the report read, as small tables (a few thousand rows at most
    whatever the cohort's size): built by Polars from the patient rows (:func:`aggregates`) or by
    Spark on the cluster (:mod:`sarcoma_cds.cohort.spark_pipeline`)."""

    patients: int
    invalid: int
    cube: Any  # group, centre, year (text), concordance, len
    reasons: Any  # reason (text), len: discordant patients only
    missing_by_centre: Any  # centre, _n (valid rows), one column per fact: valid rows missing it
    missing_by_candidates: Any  # _cands, one column per fact: valid undecided rows missing it


def aggregates(patients: Any, norm: Any | None = None) -> Aggregates:
    """:class:`Aggregates` of evaluated patients (``norm``: their normalised facts, same rows)."""
    import polars as pl

    # one pass over the patients: counts per (group, centre, year, concordance); the rest is small
    # (grouped on the integer year, cast to text on the small result: no per-patient string)
    cube = patients.group_by("group", "centre", "year", "concordance").len() \
        .with_columns(pl.col("year").cast(pl.Utf8), pl.col("group").cast(pl.Utf8),
                      pl.col("concordance").cast(pl.Utf8))
    reasons = patients.filter(pl.col("concordance") == "discordant").group_by("reason").len() \
        .with_columns(pl.col("reason").cast(pl.Utf8))
    by_centre = by_cands = None
    if norm is not None:
        v = pl.col("_v")
        df = norm.select(["centre", *FACT_FIELDS]).with_columns(
            patients.get_column("valid").alias("_v"),
            patients.get_column("candidates").alias("_cands"))
        by_centre = df.group_by("centre").agg(
            v.sum().alias("_n"), *[(pl.col(f).is_null() & v).sum().alias(f) for f in FACT_FIELDS])
        # (lazy: the filter reads the candidate sets and null flags only, never the wide fact
        # columns)
        by_cands = (
            df.lazy()
            .select(pl.col("_cands").cast(pl.Utf8), v, *[pl.col(f).is_null() for f in FACT_FIELDS])
            .filter(v & pl.col("_cands").is_not_null())
            .group_by("_cands")
            .agg([pl.col(f).sum().alias(f) for f in FACT_FIELDS])
            .collect()
        )
    invalid = int(patients.get_column("valid").not_().sum())
    return Aggregates(patients.height, invalid, cube, reasons, by_centre, by_cands)


def summary(patients: Any, norm: Any | None = None, top: int = 10,
            kb: CompiledKB | None = None) -> dict[str, Any]:
    """The contract's summary.json, plus invalid rows, rates, top discordance reasons,
    completeness."""
    return summary_of(aggregates(patients, norm), top, kb)


def summary_of(agg: Aggregates, top: int = 10, kb: CompiledKB | None = None) -> dict[str, Any]:
    """:func:`summary` from :class:`Aggregates`."""
    import polars as pl

    n = agg.patients
    cube = agg.cube
    conc = {c: 0 for c in CONCORDANCE}
    for c, k in cube.group_by("concordance").agg(pl.col("len").sum()).iter_rows():
        conc[c] = int(k)
    assessable = n - conc["not_assessable"]
    # reasons are shortened once per distinct text, then counted
    reasons = (agg.reasons
               .with_columns(pl.col("reason")
                             .str.replace(r"^(\S+ is not_recommended: .{0,140}).*$", "$1"))
               .group_by("reason").agg(pl.col("len").sum())
               .sort(["len", "reason"], descending=[True, False]).head(top))
    out: dict[str, Any] = {
        "patients": n,
        "assessable": assessable,
        "invalid_rows": agg.invalid,
        "concordance": conc,
        "concordance_rate": (
            round((conc["concordant"] + conc["concordant_conditional"]) / assessable, 4)
            if assessable else None),
        "by_group": _counts(cube, "group"),
        "by_centre": _counts(cube, "centre"),
        "by_year": _counts(cube, "year"),
        "top_discordance_reasons": [{"reason": r, "patients": int(k)}
                                    for r, k in reasons.iter_rows()],
    }
    if agg.missing_by_centre is not None:
        out["completeness"] = _completeness(agg, kb)
    return out


def _deciding_facts(kb: CompiledKB) -> dict[str, set[str]]:
    """Per group: the contract facts its classification rule reads (derived facts expanded), minus
    facts filled by a stated assumption (they never leave a group open on their own)."""
    from sarcoma_cds.domain.knowledge import DERIVED_FROM

    assumed = {a[0] for a in kb.assumptions}
    out: dict[str, set[str]] = {}
    for gid, t in kb.group_rules:
        raw: set[str] = set()
        for f in t.fields:
            raw |= set(DERIVED_FROM.get(f, (f,)))
        out[gid] = raw - assumed
    return out


def _completeness(agg: Aggregates, kb: CompiledKB | None = None) -> list[dict[str, Any]]:
    if kb is None:
        from sarcoma_cds.kb.loader import load_kb

        kb = load_kb()
    deciding = _deciding_facts(kb)
    by_centre = agg.missing_by_centre
    nmiss = {f: int(by_centre.get_column(f).sum()) for f in FACT_FIELDS}
    total = max(1, int(by_centre.get_column("_n").sum()))
    # undecided valid rows: missing counts per (distinct candidate set, fact), then small Python
    # sums
    per_cands = agg.missing_by_candidates.rows(named=True)
    rows = []
    for f in FACT_FIELDS:
        miss = nmiss[f]
        blocked = 0
        counts: dict[str, int] = {}
        for r in per_cands:
            k = int(r[f])
            cands = r["_cands"].split(";")
            if not k or not any(f in deciding.get(g, set()) for g in cands):
                continue
            blocked += k
            for g in cands:
                if f in deciding.get(g, set()):
                    counts[g] = counts.get(g, 0) + k
        rows.append({
            "fact": f, "missing": int(miss), "missing_share": round(miss / total, 4),
            "undecided_patients_missing_it": blocked,
            "blocks_groups": dict(sorted(counts.items(), key=lambda gk: (-gk[1], gk[0]))),
        })
    return sorted(rows,
                  key=lambda r: (-r["undecided_patients_missing_it"], -r["missing"], r["fact"]))


def one_line(s: dict[str, Any]) -> str:
    c = s["concordance"]
    rate = f"{100 * s['concordance_rate']:.1f}%" if s["concordance_rate"] is not None else "n/a"
    return (f"{s['patients']} patients: {c['concordant']} concordant, "
            f"{c['concordant_conditional']} conditional, {c['discordant']} discordant, "
            f"{c['not_assessable']} not assessable ({s['invalid_rows']} invalid rows); "
            f"concordance {rate} of assessable")

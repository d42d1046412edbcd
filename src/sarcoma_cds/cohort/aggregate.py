"""Aggregates over evaluated patients: concordance by group, centre and year, top reasons, completeness."""

from __future__ import annotations

from typing import Any

from sarcoma_cds.cohort.compiler import CONCORDANCE
from sarcoma_cds.domain.facts import FACT_FIELDS


def _counts(df: Any, by: str) -> dict[str, dict[str, int]]:
    """``df``: patients, or their counts per (..., concordance) in a ``len`` column (summed here)."""
    import polars as pl

    out: dict[str, dict[str, int]] = {}
    cnt = pl.col("len").sum() if "len" in df.columns else pl.len()
    t = df.filter(pl.col(by).is_not_null()).group_by(by, "concordance").agg(cnt.alias("len"))
    for key, conc, n in t.iter_rows():
        out.setdefault(str(key), {c: 0 for c in CONCORDANCE})[conc] = int(n)
    return dict(sorted(out.items()))


def summary(patients: Any, norm: Any | None = None, top: int = 10, kb: Any = None) -> dict[str, Any]:
    """The contract's summary.json, plus invalid rows, rates, top discordance reasons, completeness."""
    import polars as pl

    n = patients.height
    # one pass over the patients: counts per (group, centre, year, concordance); the rest is small
    # (grouped on the integer year, cast to text on the small result: no per-patient string)
    cube = patients.group_by("group", "centre", "year", "concordance").len() \
        .with_columns(pl.col("year").cast(pl.Utf8))
    conc = {c: 0 for c in CONCORDANCE}
    for c, k in cube.group_by("concordance").agg(pl.col("len").sum()).iter_rows():
        conc[c] = int(k)
    invalid = int(patients.get_column("valid").not_().sum())
    assessable = n - conc["not_assessable"]
    # reasons are shortened once per distinct text, then counted
    reasons = (patients.filter(pl.col("concordance") == "discordant").group_by("reason").len()
               .with_columns(pl.col("reason").cast(pl.Utf8).str.replace(r"^(\S+ is not_recommended: .{0,140}).*$", "$1"))
               .group_by("reason").agg(pl.col("len").sum())
               .sort(["len", "reason"], descending=[True, False]).head(top))
    out: dict[str, Any] = {
        "patients": n,
        "assessable": assessable,
        "invalid_rows": invalid,
        "concordance": conc,
        "concordance_rate": round((conc["concordant"] + conc["concordant_conditional"]) / assessable, 4)
        if assessable else None,
        "by_group": _counts(cube, "group"),
        "by_centre": _counts(cube, "centre"),
        "by_year": _counts(cube, "year"),
        "top_discordance_reasons": [{"reason": r, "patients": int(k)} for r, k in reasons.iter_rows()],
    }
    if norm is not None:
        out["completeness"] = completeness(patients, norm, kb)
    return out


def _deciding_facts(kb: Any) -> dict[str, set[str]]:
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


def completeness(patients: Any, norm: Any, kb: Any = None) -> list[dict[str, Any]]:
    """Per fact: share missing among valid rows, and -- for patients left with candidate groups --
    how often it is missing *and* read by a candidate group's rule, and which groups it blocks."""
    import polars as pl

    if kb is None:
        from sarcoma_cds.kb.loader import load_kb

        kb = load_kb()
    deciding = _deciding_facts(kb)

    valid = patients.get_column("valid")
    df = norm.select(["row", *FACT_FIELDS]).with_columns(
        valid.alias("_valid"), patients.get_column("candidates").alias("_cands"))
    # missing counts among valid rows in one pass; only the undecided rows are gathered
    v = pl.col("_valid")
    nmiss = df.select([(pl.col(f).is_null() & v).sum().alias(f) for f in FACT_FIELDS]).row(0, named=True)
    total = max(1, int(valid.sum()))
    # undecided valid rows: missing counts per (distinct candidate set, fact), then small Python sums
    # (lazy: the filter reads the candidate sets and null flags only, never the wide fact columns)
    per_cands = df.lazy().select("_cands", v, *[pl.col(f).is_null() for f in FACT_FIELDS]) \
        .filter(v & pl.col("_cands").is_not_null()).group_by("_cands").agg(
        [pl.col(f).sum().alias(f) for f in FACT_FIELDS]).collect().rows(named=True)
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
    return sorted(rows, key=lambda r: (-r["undecided_patients_missing_it"], -r["missing"], r["fact"]))


def one_line(s: dict[str, Any]) -> str:
    c = s["concordance"]
    rate = f"{100 * s['concordance_rate']:.1f}%" if s["concordance_rate"] is not None else "n/a"
    return (f"{s['patients']} patients: {c['concordant']} concordant, {c['concordant_conditional']} conditional, "
            f"{c['discordant']} discordant, {c['not_assessable']} not assessable ({s['invalid_rows']} invalid rows); "
            f"concordance {rate} of assessable")

"""Aggregates over evaluated patients: concordance by group, centre and year, top reasons, completeness."""

from __future__ import annotations

from typing import Any

from sarcoma_cds.cohort.compiler import CONCORDANCE
from sarcoma_cds.domain.facts import FACT_FIELDS


def _counts(df: Any, by: str) -> dict[str, dict[str, int]]:
    import polars as pl

    out: dict[str, dict[str, int]] = {}
    t = df.filter(pl.col(by).is_not_null()).group_by(by, "concordance").len()
    for key, conc, n in t.iter_rows():
        out.setdefault(str(key), {c: 0 for c in CONCORDANCE})[conc] = int(n)
    return dict(sorted(out.items()))


def summary(patients: Any, norm: Any | None = None, top: int = 10, kb: Any = None) -> dict[str, Any]:
    """The contract's summary.json, plus invalid rows, rates, top discordance reasons, completeness."""
    import polars as pl

    n = patients.height
    conc = {c: 0 for c in CONCORDANCE}
    for c, k in patients.group_by("concordance").len().iter_rows():
        conc[c] = int(k)
    invalid = int(patients.filter(~pl.col("valid")).height)
    assessable = n - conc["not_assessable"]
    reasons = (patients.filter(pl.col("concordance") == "discordant")
               .with_columns(pl.col("reason").str.replace(r"^(\S+ is not_recommended: .{0,140}).*$", "$1"))
               .group_by("reason").len().sort(["len", "reason"], descending=[True, False]).head(top))
    out: dict[str, Any] = {
        "patients": n,
        "assessable": assessable,
        "invalid_rows": invalid,
        "concordance": conc,
        "concordance_rate": round((conc["concordant"] + conc["concordant_conditional"]) / assessable, 4)
        if assessable else None,
        "by_group": _counts(patients, "group"),
        "by_centre": _counts(patients, "centre"),
        "by_year": _counts(patients.with_columns(pl.col("year").cast(pl.Utf8)), "year"),
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

    df = norm.select(["row", *FACT_FIELDS]).with_columns(
        patients.get_column("valid").alias("_valid"), patients.get_column("candidates").alias("_cands"))
    df = df.filter(pl.col("_valid"))
    total = max(1, df.height)
    undecided = df.filter(pl.col("_cands").is_not_null())
    rows = []
    for f in FACT_FIELDS:
        miss = df.get_column(f).null_count()
        masks = {c for c in undecided.get_column("_cands").unique().to_list()
                 if any(f in deciding.get(g, set()) for g in c.split(";"))}
        blocked = undecided.filter(pl.col(f).is_null() & pl.col("_cands").is_in(list(masks)))
        groups = (blocked.select(pl.col("_cands").str.split(";").explode())
                  .filter(pl.col("_cands").is_in([g for g, fs in deciding.items() if f in fs]))
                  .group_by("_cands").len()
                  .sort(["len", "_cands"], descending=[True, False]))
        rows.append({
            "fact": f, "missing": int(miss), "missing_share": round(miss / total, 4),
            "undecided_patients_missing_it": int(blocked.height),
            "blocks_groups": {g: int(k) for g, k in groups.iter_rows()},
        })
    return sorted(rows, key=lambda r: (-r["undecided_patients_missing_it"], -r["missing"], r["fact"]))


def one_line(s: dict[str, Any]) -> str:
    c = s["concordance"]
    rate = f"{100 * s['concordance_rate']:.1f}%" if s["concordance_rate"] is not None else "n/a"
    return (f"{s['patients']} patients: {c['concordant']} concordant, {c['concordant_conditional']} conditional, "
            f"{c['discordant']} discordant, {c['not_assessable']} not assessable ({s['invalid_rows']} invalid rows); "
            f"concordance {rate} of assessable")

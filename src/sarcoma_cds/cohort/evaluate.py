"""Cohort evaluation end to end: read -> validate -> encode -> evaluate (an engine) -> decode.

Engines: ``polars`` (default), ``duckdb``, ``spark`` (the vectorised evaluators of the
compiled rule trees) and ``python`` (the per-patient engine, :func:`sarcoma_cds.recommend`,
row by row: the reference implementation the others are tested against).

Concordance of one patient (contract, with this project's decision for repeated items):
an item that occurs several times in one pathway (e.g. a regimen listed in two steps)
takes its least severe occurrence; the patient's pathway is the first of the group's
pathways that contains every delivered item and whose worst item status is least
severe. ``discordant`` if no pathway contains every item or the chosen pathway's worst
status is ``not_recommended``; ``concordant_conditional`` if it is ``conditional``;
otherwise ``concordant``. A valid row with no delivered item is ``not_assessable``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sarcoma_cds.cohort import compiler as C
from sarcoma_cds.cohort.io import (
    check_delivered_items,
    encode_lazy,
    encode_with_items,
    facts_dict,
    max_items,
    normalise,
    read_raw,
)
from sarcoma_cds.cohort.pack import pack
from sarcoma_cds.domain.knowledge import SEVERITY, CompiledKB

ENGINES = ("polars", "duckdb", "spark", "python")
TEXT_COLUMNS = (
    "group",
    "candidates",
    "out_of_scope",
    "stage",
    "stage_possible",
    "gist_risk_afip",
    "gist_risk_nih",
    "delivered",
    "statuses",
    "concordance",
    "reason",
)
PATIENT_COLUMNS = ["patient_id", "centre", "diagnosis_date", "year", "valid", "group", "candidates",
                   "out_of_scope", "stage", "stage_possible", "gist_risk_afip", "gist_risk_nih",
                   "delivered", "statuses", "pathway", "concordance", "reason"]


def reason_text(
    kind: int,
    *,
    group: str | None = None,
    item: str | None = None,
    why: str = "",
    items: list[str] | None = None,
    oos: str | None = None,
    cands: list[str] | None = None,
    pathway: int | None = None,
    errors: list[str] | None = None,
) -> str:
    """The human-readable reason of a concordance class (one format for every engine)."""
    if kind == C.RK_NOT_REC:
        return f"{item} is not_recommended: {why}"
    if kind == C.RK_COND:
        return f"{item} is conditional: {why}"
    if kind == C.RK_NOT_IN_GROUP:
        return f"{item} is not in any pathway of {group}"
    if kind == C.RK_NO_SINGLE_PATHWAY:
        return f"no single pathway of {group} contains all of: {', '.join(items or [])}"
    if kind == C.RK_OUT_OF_SCOPE:
        return f"out of scope: {oos}"
    if kind == C.RK_CANDIDATES:
        return f"no single patient group; candidates: {', '.join(cands or [])}"
    if kind == C.RK_NO_DELIVERED:
        return "delivered: no treatment recorded"
    if kind == C.RK_INVALID:
        return "invalid row: " + "; ".join(errors or [])
    return f"pathway {pathway} of {group}"


@dataclass(frozen=True)
class DecodeSpec:
    """What :func:`decode` needs of a compilation (small and picklable: Spark ships it to
    executors)."""

    slots: int
    groups: list[str]
    oos_reasons: list[str]
    reasons: list[str]

    @classmethod
    def of(cls, comp: C.KBCompilation) -> DecodeSpec:
        return cls(comp.slots, list(comp.groups), list(comp.oos_reasons), list(comp.reasons))


@dataclass
class Prepared:
    norm: Any  # normalised rows with _err and items
    comp: C.KBCompilation
    unchecked: Any = None  # the normalised rows before the delivered items were checked
    items: list[str] | None = None  # every distinct delivered item (canonical)


def prepare(source: str | Path | Any, kb: CompiledKB, slots: int | None = None) -> Prepared:
    import polars as pl

    raw = read_raw(source) if not isinstance(source, pl.DataFrame) else source
    return _with_kb(normalise(raw), kb, slots)


def prepare_for(prep: Prepared, kb: CompiledKB) -> Prepared:
    """The same rows under another knowledge base: only the delivered items depend on it, so the
    file is not read or validated again (guideline-change impact)."""
    return _with_kb(prep.unchecked, kb)


def _with_kb(unchecked: Any, kb: CompiledKB, slots: int | None = None) -> Prepared:
    norm, items = check_delivered_items(unchecked, C.item_vocabulary(kb))
    comp = C.compile_kb_plan(kb, slots or max_items(norm))  # (one slot per delivered item)
    return Prepared(norm, comp, unchecked, items)


def evaluate(
    prep: Prepared, engine: str = "polars", spark: Any = None, progress: Any = None
) -> Any:
    """One row per input row with :data:`PATIENT_COLUMNS`."""
    from concurrent.futures import ThreadPoolExecutor

    import polars as pl

    norm, comp = prep.norm, prep.comp
    valid = norm.filter(pl.col("_err").list.len() == 0)
    with ThreadPoolExecutor(1) as pool:
        # the per-row input columns of the output are built on a worker thread while the rules
        # run (the evaluators leave part of the second core idle)
        base = pool.submit(_base_columns, norm, engine == "python")
        out = _evaluate_valid(valid, comp, engine, spark, progress, prep.items)
        return assemble(norm, out, base.result())


def _evaluate_valid(valid: Any, comp: C.KBCompilation, engine: str, spark: Any, progress: Any,
                    items: list[str] | None = None) -> Any:
    if engine == "python":
        return _python_engine(valid, comp, progress)
    if engine == "polars":
        from sarcoma_cds.cohort.backends import run_polars

        table, vocab = encode_lazy(valid, comp, items)
        rows, outcomes = run_polars(
            comp.plan, table, keep=tuple(f"x_{j}" for j in range(comp.slots))
        )
        # decoded once per distinct outcome (its row: the outcome's index), then given to every
        # row with that outcome
        texts = decode(outcomes, None, vocab, comp).drop("row")
        return texts[rows.get_column("outcome")].insert_column(0, rows.get_column("row"))
    if engine not in ("duckdb", "spark"):
        raise ValueError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    enc, codes, vocab = encode_with_items(valid, comp, items)
    if engine == "duckdb":
        from sarcoma_cds.cohort.backends import run_duckdb
        out = run_duckdb(comp.plan, enc)
    else:
        from sarcoma_cds.cohort.backends import run_spark
        out = run_spark(comp.plan, enc, spark)
    return decode(out, codes, vocab, comp)


def _mask_map(
    values: list[int | None], vocab: list[str] | tuple[str, ...], sep: str
) -> dict[int, str]:
    out: dict[int, str] = {}
    for v in values:
        if v is None:
            continue
        out[v] = sep.join(x for i, x in enumerate(vocab) if v >> i & 1)
    return out


def decode(out: Any, codes: Any, vocab: list[str], comp: C.KBCompilation | DecodeSpec) -> Any:
    """Integer evaluator output -> the patient columns in row order (vectorised, shared by all
    vectorised engines).

    ``codes``: ``row`` and the item codes ``x_j`` into ``vocab`` (see
    :func:`~sarcoma_cds.cohort.io.encode_with_items`): a row's items without touching strings;
    ``None`` when ``out`` already carries them (its rows may then be in any order).
    """
    import polars as pl

    dcols = [f"x_{j}" for j in range(comp.slots)]
    if codes is None:
        full = out
    elif out.height == codes.height and out.get_column("row").equals(codes.get_column("row")):
        full = out.hstack(codes.drop("row"))  # both in row order (the usual case): no join
    else:
        full = out.join(codes, on="row", how="left")
    keys = [
        "group_idx",
        "cand_mask",
        "oos_idx",
        "stage_mask",
        "afip_mask",
        "nih_mask",
        "conc",
        "rkind",
        "pathway",
        "rslot",
        "rreason",
        *dcols,
        *[f"st_{j}" for j in range(comp.slots)],
    ]
    # strings are built once per distinct outcome, then joined back: far fewer than patients.
    # The outcome's integer columns are packed exactly into a few 63-bit words (the key of both
    # steps).
    words, unpack = pack(full, keys)
    full = full.select("row", *words)
    wnames = [w.meta.output_name() for w in words]
    # (the item names as one text column per slot, not a list column: list operations cost
    # more than the strings here; a row's items fill the first slots, so NULLs only trail)
    items = [pl.col(f"_item{j}") for j in range(comp.slots)]
    df = unpack(full.select(wnames).unique()).with_columns(
        pl.col(d).replace_strict(list(range(len(vocab))), vocab, default=None, return_dtype=pl.Utf8)
        .alias(f"_item{j}") for j, d in enumerate(dcols))

    def mapped(colname: str, vocab: Any, sep: str, single: bool = False) -> Any:
        vals = df.get_column(colname).unique().to_list()
        m = {k: v for k, v in _mask_map(vals, vocab, sep).items() if k}
        if single:
            m = {k: v for k, v in m.items() if k and (k & (k - 1)) == 0}
        keys = list(m)
        return pl.col(colname).replace_strict(
            keys, [m[k] for k in keys], default=None, return_dtype=pl.Utf8
        )

    groups = comp.groups
    status_names = list(C.STATUSES)
    stat_exprs = []
    for j in range(comp.slots):
        st = pl.col(f"st_{j}")
        name = items[j]
        stat_exprs.append(pl.when(name.is_not_null()).then(pl.concat_str(
            name, pl.lit("="), st.replace_strict(list(range(5)), status_names, default="absent",
                                                 return_dtype=pl.Utf8).fill_null("absent"))))
    group = pl.col("group_idx").replace_strict(
        list(range(len(groups))), groups, default=None, return_dtype=pl.Utf8
    )
    oos = pl.col("oos_idx").replace_strict(
        list(range(len(comp.oos_reasons))), comp.oos_reasons, default=None, return_dtype=pl.Utf8
    )
    cands = mapped("cand_mask", groups, ";")
    slot = pl.col("rslot").fill_null(0)
    item: Any = pl.lit(None, pl.Utf8)
    for j in reversed(range(comp.slots)):
        item = pl.when(slot == j).then(items[j]).otherwise(item)
    why = pl.col("rreason").replace_strict(list(range(len(comp.reasons))), comp.reasons, default="",
                                           return_dtype=pl.Utf8)
    k = pl.col("rkind")
    reason = (
        pl.when(k == C.RK_NOT_REC)
        .then(pl.concat_str(item, pl.lit(" is not_recommended: "), why))
        .when(k == C.RK_COND)
        .then(pl.concat_str(item, pl.lit(" is conditional: "), why))
        .when(k == C.RK_NOT_IN_GROUP)
        .then(pl.concat_str(item, pl.lit(" is not in any pathway of "), pl.col("group")))
        .when(k == C.RK_NO_SINGLE_PATHWAY)
        .then(
            pl.concat_str(
                pl.lit("no single pathway of "),
                pl.col("group"),
                pl.lit(" contains all of: "),
                pl.concat_str(items, separator=", ", ignore_nulls=True),
            )
        )
        .when(k == C.RK_OUT_OF_SCOPE)
        .then(pl.concat_str(pl.lit("out of scope: "), pl.col("out_of_scope")))
        .when(k == C.RK_CANDIDATES)
        .then(
            pl.concat_str(
                pl.lit("no single patient group; candidates: "),
                pl.col("candidates").str.replace_all(";", ", ", literal=True),
            )
        )
        .when(k == C.RK_NO_DELIVERED)
        .then(pl.lit("delivered: no treatment recorded"))
        .otherwise(
            pl.concat_str(
                pl.lit("pathway "),
                (pl.col("pathway") + 1).cast(pl.Utf8),
                pl.lit(" of "),
                pl.col("group"),
            )
        )
    )
    res = df.with_columns(
        group.alias("group"),
        cands.alias("candidates"),
        oos.alias("out_of_scope"),
        mapped("stage_mask", C.STAGE_VOCAB, "|", single=True).alias("stage"),
        mapped("stage_mask", C.STAGE_VOCAB, "|").alias("stage_possible"),
        mapped("afip_mask", C.AFIP_VOCAB, "|").alias("gist_risk_afip"),
        mapped("nih_mask", C.NIH_VOCAB, "|").alias("gist_risk_nih"),
        pl.when(pl.col("group_idx").is_null())
        .then(pl.lit(""))
        .otherwise(pl.concat_str(stat_exprs, separator="; ", ignore_nulls=True))
        .alias("statuses"),
        pl.col("conc")
        .replace_strict(list(range(4)), list(C.CONCORDANCE), return_dtype=pl.Utf8)
        .alias("concordance"),
        pl.concat_str(items, separator="; ", ignore_nulls=True).alias("delivered"),
    ).with_columns(reason.alias("reason"), (pl.col("pathway") + 1).alias("pathway"))
    # Categorical: each distinct text is stored once and rows carry a small code (the join below,
    # the aggregates and the Parquet writer's dictionary then work on codes, not on strings)
    res = res.select(*keys, *wnames, *[pl.col(c).cast(pl.Categorical) for c in TEXT_COLUMNS],
                     pl.col("pathway").alias("_pathway1"))
    res = res.with_columns((pl.col("_pathway1") - 1).alias("pathway"))
    key = full.select("row", *wnames)
    if codes is None and not key.get_column("row").is_sorted():
        key = key.sort("row")
    joined = key.join(res.select(*wnames, *[c for c in res.columns if c not in keys
                                                                     and c not in wnames]),
                                              on=wnames, how="left", maintain_order="left")
    return joined.select(
        "row",
        "group",
        "candidates",
        "out_of_scope",
        "stage",
        "stage_possible",
        "gist_risk_afip",
        "gist_risk_nih",
        "delivered",
        "statuses",
        pl.col("_pathway1").alias("pathway"),
        "concordance",
        "reason",
    )


def _delivered_text() -> Any:
    import polars as pl

    return pl.col("items").list.join("; ").cast(pl.Categorical).alias("delivered")


def _base_columns(norm: Any, delivered: bool = True) -> Any:
    """The output columns that come from the input row itself. ``delivered=False``: the
    evaluated rows bring their ``delivered`` text (the decoder builds it once per distinct
    outcome; joining 1M item lists is slower); rows without items are flagged instead."""
    import polars as pl

    return norm.lazy().select(
        "row", "patient_id", "centre", "diagnosis_date",
        pl.col("diagnosis_date").dt.year().alias("year"),
        (pl.col("_err").list.len() == 0).alias("valid"),
        _delivered_text() if delivered else pl.col("items").is_null().alias("_no_items"),
        pl.col("_err"),
    ).collect(engine="streaming")


def assemble(norm: Any, out: Any, base: Any = None) -> Any:
    """Join evaluated rows back to every input row; invalid rows are not_assessable with their
    errors.
    ``base``: :func:`_base_columns` of ``norm`` when already built."""
    import polars as pl

    if base is None:
        base = _base_columns(norm, "delivered" not in out.columns)
    if out.height == base.height and out.get_column("row").equals(base.get_column("row")):
        res = base.hstack(
            out.drop("row")
        )  # every row evaluated, in the same order (the usual case): no join
    else:
        res = base.join(out, on="row", how="left", maintain_order="left")
    if not base.get_column("row").is_sorted():
        res = res.sort("row")
    cat = pl.Categorical
    all_valid = res.get_column("valid").all()
    if "_no_items" in res.columns:  # (the evaluated rows' text; none without items)
        res = res.with_columns(
            pl.when(~pl.col("_no_items")).then(pl.col("delivered")).alias("delivered")
        )
        if not all_valid:  # invalid rows were not evaluated: their text from their items
            invalid = (
                norm.lazy()
                .filter(pl.col("_err").list.len() > 0)
                .select("row", _delivered_text())
                .collect()
            )
            res = res.update(invalid, on="row", how="left")
    if not all_valid:
        res = res.with_columns(
            pl.when(pl.col("valid"))
            .then(pl.col("concordance").cast(cat))
            .otherwise(pl.lit("not_assessable", cat))
            .alias("concordance"),
            pl.when(pl.col("valid"))
            .then(pl.col("reason").cast(cat))
            .otherwise(
                pl.concat_str(pl.lit("invalid row: "), pl.col("_err").list.join("; ")).cast(cat)
            )
            .alias("reason"),
        )
    res = res.with_columns(
        pl.col("pathway").cast(pl.Int64), *[pl.col(c).cast(cat) for c in TEXT_COLUMNS]
    )
    return res.select(PATIENT_COLUMNS)


# ------------------------------------------------------------------ the per-patient reference


def _one_of(values: str | Any | None, vocab: tuple[str, ...]) -> str | None:
    """A value, or the set of values still possible, as the vectorised engines print it:
    ``a|b`` in vocabulary order; nothing for an empty set."""
    if values is None:
        return None
    given = {values} if isinstance(values, str) else set(values)
    return "|".join(v for v in vocab if v in given) or None


def oracle_row(kb: CompiledKB, facts: dict[str, Any], items: list[str]) -> dict[str, Any]:
    """Concordance of one patient computed on ``recommend()`` output: the reference semantics."""
    from sarcoma_cds.domain.engine import recommend

    rec = recommend(kb, facts)
    group = rec.patient_group.id if rec.patient_group else None
    cands = list(rec.candidate_groups)
    oos = rec.out_of_scope.reason if rec.out_of_scope else None
    out: dict[str, Any] = {
        "group": group,
        "candidates": ";".join(cands) if cands else None,
        "out_of_scope": oos,
        "stage": rec.stage.group if rec.stage else None,
        "stage_possible": _one_of(rec.stage.possible_groups or rec.stage.group, C.STAGE_VOCAB)
        if rec.stage
        else None,
        "gist_risk_afip": None,
        "gist_risk_nih": None,
        "statuses": "",
        "pathway": None,
    }
    if (
        facts.get("histology") == "gist"
    ):  # the risk categories still possible, as the engine derives them
        from sarcoma_cds.domain.engine import evaluation_view
        from sarcoma_cds.domain.facts import parse_facts

        view = evaluation_view(kb, parse_facts(facts))
        if not any(
            sc.test.test(view) is True for sc in kb.scope
        ):  # (an out-of-scope GIST has none)
            out["gist_risk_afip"] = _one_of(view["gist_risk_afip"], C.AFIP_VOCAB)
            out["gist_risk_nih"] = _one_of(view["gist_risk_nih"], C.NIH_VOCAB)
    if group is None:
        kind = C.RK_OUT_OF_SCOPE if oos else C.RK_CANDIDATES
        out.update(concordance="not_assessable", reason=reason_text(kind, oos=oos, cands=cands))
        return out
    if not items:
        out.update(concordance="not_assessable", reason=reason_text(C.RK_NO_DELIVERED))
        return out
    per_path: list[dict[str, tuple[int, int, str]]] = []
    for pw in rec.pathways:
        occ: dict[str, tuple[int, int, str]] = {}
        order = 0
        for st in pw.steps:
            cands_ = [(st.treatment, st.status, st.reasons)] + [
                (C.item_key("+".join(o.drugs)), o.status, o.reasons) for o in st.options]
            for key, status, reasons in cands_:
                v = (SEVERITY[status], order, reasons[0] if reasons else "")
                if key not in occ or v[:2] < occ[key][:2]:
                    occ[key] = v
                order += 1
        per_path.append(occ)
    best: tuple[int, int] | None = None
    for pi, occ in enumerate(per_path):
        if all(i in occ for i in items):
            score = max(occ[i][0] for i in items)
            if best is None or (score, pi) < best:
                best = (score, pi)
    names = list(C.STATUSES)
    if best is None:
        sts = []
        for i in items:
            sev = [occ[i][0] for occ in per_path if i in occ]
            sts.append(f"{i}={names[min(sev)] if sev else 'absent'}")
        out["statuses"] = "; ".join(sts)
        absent = [i for i in items if not any(i in occ for occ in per_path)]
        out["concordance"] = "discordant"
        out["reason"] = (reason_text(C.RK_NOT_IN_GROUP, item=absent[0], group=group) if absent
                         else reason_text(C.RK_NO_SINGLE_PATHWAY, group=group, items=items))
        return out
    score, pi = best
    occ = per_path[pi]
    out["statuses"] = "; ".join(f"{i}={names[occ[i][0]]}" for i in items)
    out["pathway"] = pi + 1
    if score == 4 or score == 3:
        first = next(i for i in items if occ[i][0] == score)
        kind = C.RK_NOT_REC if score == 4 else C.RK_COND
        out["concordance"] = "discordant" if score == 4 else "concordant_conditional"
        out["reason"] = reason_text(kind, item=first, why=occ[first][2])
    else:
        out["concordance"] = "concordant"
        out["reason"] = reason_text(C.RK_NONE, pathway=pi + 1, group=group)
    return out


def _python_engine(valid: Any, comp: C.KBCompilation, progress: Any = None) -> Any:
    import polars as pl

    rows = []
    kb = comp.kb
    recs = valid.to_dicts()
    for n, r in enumerate(recs):
        o = oracle_row(kb, facts_dict(r), list(r["items"] or []))
        o["row"] = r["row"]
        rows.append(o)
        if progress is not None and n % 1000 == 0:
            progress(n)
    if progress is not None:
        progress(len(recs))
    schema = {
        "row": pl.Int64,
        "group": pl.Utf8,
        "candidates": pl.Utf8,
        "out_of_scope": pl.Utf8,
        "stage": pl.Utf8,
        "stage_possible": pl.Utf8,
        "gist_risk_afip": pl.Utf8,
        "gist_risk_nih": pl.Utf8,
        "statuses": pl.Utf8,
        "pathway": pl.Int64,
        "concordance": pl.Utf8,
        "reason": pl.Utf8,
    }
    df = pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)
    return df.select(list(schema))


def run_file(path: str | Path, kb: CompiledKB, engine: str = "polars") -> Any:
    return evaluate(prepare(path, kb), engine)

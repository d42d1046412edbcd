"""Synthetic cohorts: realistic, documented distributions, deterministic per seed.

Distributions (see docs/cohort.md for the table): histology (GIST 20 %, adult-type
soft-tissue sarcoma 77 %, out-of-scope histologies 3 %), site by histology, size
log-normal (median ~6.7 cm), FNCLCC grade, nodes, metastasis (M1 17 %), resectability,
disease status, GIST mitotic rate and genotype (KIT exon 11 65 %, ...), NTRK/SDH/BRAF/NF1
status mostly untested, per-fact missingness, 9 centres, diagnosis 2015-2024.

Delivered treatment: with probability ``1 - discordance_rate`` the first-line step (or
one of its regimens when the step is drug-only) of one of the patient's group's pathways,
sometimes with the next step; otherwise a random treatment or regimen of the whole
knowledge base. The patient group comes from evaluating the knowledge base on the
generated facts (vectorised engine), so "concordant by construction" follows the
current rules.

Every column is drawn whole with NumPy (``Generator(PCG64(seed))`` is the only source of
randomness: same seed, same cohort) and values are gathered by code, because a per-patient
Python loop made a million patients take a minute; most of the remaining time is the
knowledge-base evaluation that assigns the groups.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sarcoma_cds.domain.knowledge import CompiledKB

# Weights (relative; a None key is "not recorded"). These dictionaries are the documentation.
HISTOLOGY = {
    "gist": 20,
    "liposarcoma_well_differentiated": 6,
    "liposarcoma_dedifferentiated": 7,
    "liposarcoma_myxoid": 5,
    "liposarcoma_pleomorphic": 2,
    "liposarcoma": 2,
    "leiomyosarcoma": 14,
    "undifferentiated_pleomorphic_sarcoma": 14,
    "synovial_sarcoma": 5,
    "myxofibrosarcoma": 8,
    "malignant_peripheral_nerve_sheath_tumour": 3,
    "angiosarcoma": 3,
    "other_soft_tissue_sarcoma": 8,
    "rhabdomyosarcoma": 1,
    "desmoid_tumour": 1,
    "dermatofibrosarcoma_protuberans": 1,
}
SITE_GIST = {
    "stomach": 55,
    "small_intestine": 26,
    "duodenum": 5,
    "rectum": 4,
    "colon": 2,
    "oesophagus": 1,
    "other_gi": 3,
    "intra_abdominal": 3,
    "retroperitoneum": 1,
}
SITE_STS = {"lower_extremity": 40, "upper_extremity": 12, "trunk": 15, "retroperitoneum": 16,
            "intra_abdominal": 6, "small_intestine": 1, "colon": 1, "head_neck": 5, "other": 4}
GRADE = {"1": 20, "2": 30, "3": 45, "X": 5}  # non-GIST only
NODES = {"N0": 84, "N1": 4, "NX": 12}
METASTASIS = {"M0": 81, "M1": 17, None: 2}
BURDEN = {"oligometastatic": 40, "disseminated": 60}  # M1 only
MET_SITES = {
    "lung": 40,
    "lung;bone": 10,
    "liver": 20,
    "liver;peritoneum": 12,
    "peritoneum": 8,
    "bone": 6,
    "lung;liver": 4,
}  # M1 only; ';' separates list items
RESECTABILITY = {
    "resectable": 64,
    "resectable_significant_morbidity": 14,
    "unresectable": 16,
    None: 6,
}
DISEASE = {"primary": 80, "recurrent": 11, "progressive": 5, None: 4}
EXTENT = {"limited": 50, "widespread": 50}  # progression extent, progressive disease only
RESECTION = {"not_resected": 70, "R0": 20, "R1": 6, "R2": 2, None: 2}  # GIST only
RUPTURE = {True: 5, False: 70, None: 25}  # GIST only
KIT = {"exon_11": 65, "exon_9": 9, "exon_13": 1, "exon_17": 1, "none": 13, "unknown": 5, None: 6}
PDGFRA = {
    "none": 72,
    "d842v": 6,
    "exon_18_sensitive": 2,
    "exon_12": 1,
    "exon_14": 1,
    "unknown": 6,
    None: 12,
}
TRI = {"gist_sdh": {True: 4, False: 56, None: 40}, "gist_braf": {True: 1, False: 49, None: 50},
       "gist_nf1": {True: 2, False: 38, None: 60}, "ntrk": {True: 1, False: 39, None: 60}}
# prior therapies ('' = recorded, none); GIST with progressive disease: imatinib when recorded
PRIOR = {None: 50, "anthracycline": 10, "radiotherapy;surgery": 5, "": 35}
PRIOR_GIST_PROGRESSIVE = "imatinib_standard_dose"
# contract 1.1 treatment history: failure (progressed on) and intolerance; GIST with
# progressive disease progressed on standard-dose imatinib when recorded
PROGRESSED_ON = {None: 70, "": 22, "anthracycline": 8}
INTOLERANT_OF = {None: 80, "": 17, "anthracycline": 2, "imatinib_standard_dose": 1}
COMORBIDITIES = {None: 60, "heart_failure": 3, "uncorrectable_coagulopathy": 1, "": 36}
ECOG = {0: 40, 1: 40, 2: 15, 3: 5}
DEPTH = {"deep": 80, "superficial": 20}
CENTRES = {
    "Amsterdam": 14,
    "Berlin": 16,
    "Copenhagen": 8,
    "Dublin": 7,
    "Edinburgh": 10,
    "Florence": 13,
    "Geneva": 9,
    "Helsinki": 6,
    "Lyon": 17,
}
SIZE_CM = (1.9, 0.65, 0.3, 60.0)  # log-normal mu, sigma; rounded to 0.1 cm, clipped to min-max
MITOSES_MEAN = 5.0  # per 5 mm2, exponential, rounded to whole mitoses; GIST only
AGE_YEARS = (58.0, 15.0, 5, 95)  # normal mean, sd; truncated to whole years, clipped to min-max
DIAGNOSIS_YEARS = (2015, 2024)  # uniform year, then day 1-365 of it
MISSING = {
    "size_cm": 0.06,
    "grade": 0.07,
    "nodes": 0.05,
    "mitotic_rate_per_5mm2": 0.10,
    "age_years": 0.03,
    "ecog": 0.2,
    "depth": 0.15,
}
INVALID_GRADE = (
    "grade_4"  # what an invalid row (share ``invalid_rate``) carries: outside the vocabulary
)


def concordant_choices(kb: CompiledKB) -> dict[str, list[list[str]]]:
    """Per group, delivered-item lists that follow one of its pathways."""
    out: dict[str, list[list[str]]] = {}
    for gid, g in kb.groups.items():
        ch: list[list[str]] = []
        for pw in g.pathways:
            first = pw.steps[0]
            heads = (
                (
                    ["+".join(o.drugs) for o in first.options if o.line == "primary"]
                    or [first.treatment]
                )
                if first.options_cover_step
                else [first.treatment]
            )
            for h in heads:
                ch.append([h])
                if len(pw.steps) > 1:
                    ch.append([h, pw.steps[1].treatment])
        out[gid] = ch
    return out


def all_items(kb: CompiledKB) -> list[str]:
    items: list[str] = []
    for g in kb.groups.values():
        for pw in g.pathways:
            for st in pw.steps:
                for it in [st.treatment, *("+".join(o.drugs) for o in st.options)]:
                    if it not in items:
                        items.append(it)
    return items


def _generator(seed: int) -> Any:
    """NumPy's PCG64 stream for ``seed``; PCG64 takes no negative seed, so those get their own
    stream."""
    from numpy.random import PCG64, Generator, SeedSequence

    return Generator(PCG64(seed if seed >= 0 else SeedSequence([-seed, 1])))


class _Draw:
    """Whole-column draws from one generator, in call order (the order fixes the cohort for a
    seed)."""

    def __init__(self, seed: int, n: int) -> None:
        self.rng, self.n = _generator(seed), n

    def u(self) -> Any:
        return self.rng.random(self.n)

    def codes(self, dist: dict[Any, int]) -> Any:
        """Per patient an index into ``list(dist)``, drawn with the dictionary's weights.

        The weights are whole numbers: a uniform integer below their sum, looked up in a table
        where key k fills weight-k slots, gives exactly those odds (and is faster than ``choice``).
        """
        import numpy as np

        slots = np.repeat(np.arange(len(dist)), list(dist.values()))
        return slots[self.rng.integers(0, len(slots), self.n)]


def _gather(keys: Iterable[Any], codes: Any, dtype: Any, null: Any = None) -> Any:
    """``list(keys)[code]`` per patient, null where ``null`` (a boolean array) is set.

    Gathering from a Series of the few distinct values builds a column without a Python loop;
    list columns split their keys on ';' (``''`` is the empty list).
    """
    import numpy as np
    import polars as pl

    vals = list(keys)
    if isinstance(dtype, pl.List):
        vals = [None if k is None else [x for x in k.split(";") if x] for k in vals]
    if null is not None:
        codes = np.where(null, len(vals), codes)  # the trailing null
    return pl.Series([*vals, None], dtype=dtype).gather(codes)


def _num(x: Any, null: Any, dtype: Any) -> Any:
    """A numeric Series from ``x``, null where ``null`` is set."""
    import numpy as np
    import polars as pl

    return pl.Series(np.where(null, np.nan, x)).fill_nan(None).cast(dtype)


def synth(n: int, seed: int = 0, discordance_rate: float = 0.15, kb: CompiledKB | None = None,
          invalid_rate: float = 0.0) -> Any:
    """A synthetic cohort as a Polars DataFrame (lists as list columns)."""
    import numpy as np
    import polars as pl

    from sarcoma_cds.kb.loader import load_kb

    kb = kb or load_kb()
    d = _Draw(seed, n)
    s, b, i64, f64 = pl.Utf8, pl.Boolean, pl.Int64, pl.Float64
    ls = pl.List(pl.Utf8)
    # every draw is for all n patients (then masked), so one fact's rule never shifts another's
    # stream
    hist = d.codes(HISTOLOGY)
    gist = hist == list(HISTOLOGY).index("gist")
    site_g, site_s = d.codes(SITE_GIST), d.codes(SITE_STS)
    centre = d.codes(CENTRES)
    year = d.rng.integers(DIAGNOSIS_YEARS[0], DIAGNOSIS_YEARS[1] + 1, n)
    day = d.rng.integers(0, 365, n)  # days after 1 January (31 December only in non-leap years)
    mu, sigma, lo, hi = SIZE_CM
    size = np.clip(np.round(d.rng.lognormal(mu, sigma, n), 1), lo, hi)
    grade, nodes = d.codes(GRADE), d.codes(NODES)
    meta, burden, sites = d.codes(METASTASIS), d.codes(BURDEN), d.codes(MET_SITES)
    m1 = meta == list(METASTASIS).index("M1")
    resect, disease, extent = d.codes(RESECTABILITY), d.codes(DISEASE), d.codes(EXTENT)
    progressive = disease == list(DISEASE).index("progressive")
    mitoses = np.round(d.rng.exponential(MITOSES_MEAN, n))
    rupture, resection = d.codes(RUPTURE), d.codes(RESECTION)
    kit, pdgfra = d.codes(KIT), d.codes(PDGFRA)
    sdh, braf, nf1, ntrk = (d.codes(TRI[k]) for k in ("gist_sdh", "gist_braf", "gist_nf1", "ntrk"))
    prior, comorb = d.codes(PRIOR), d.codes(COMORBIDITIES)
    amean, asd, amin, amax = AGE_YEARS
    age = np.clip(np.trunc(d.rng.normal(amean, asd, n)), amin, amax)
    ecog, depth = d.codes(ECOG), d.codes(DEPTH)
    disc, pick, bad = d.u(), d.u(), d.u()
    miss = {k: d.u() < p for k, p in MISSING.items()}
    progressed, intolerant = d.codes(PROGRESSED_ON), d.codes(INTOLERANT_OF)

    recorded = np.array([k is not None for k in PRIOR])[prior]
    prior = np.where(gist & progressive & recorded, len(PRIOR), prior)
    progressed = np.where(
        gist & ~progressive & (np.array(list(PROGRESSED_ON))[progressed] == "anthracycline"),
        list(PROGRESSED_ON).index(""),
        progressed,
    )  # anthracycline failure: not GIST
    progressed = np.where(gist & progressive & (progressed != list(PROGRESSED_ON).index(None)),
                          len(PROGRESSED_ON), progressed)
    dates = (year - 1970).astype("datetime64[Y]").astype("datetime64[D]") + day
    facts = pl.DataFrame(
        [
            pl.select(
                pl.concat_str(
                    pl.lit(f"P{seed}-"), pl.int_range(n, dtype=pl.Int64).cast(s).str.zfill(7)
                )
            )
            .to_series()
            .alias("patient_id"),
            _gather(CENTRES, centre, s).alias("centre"),
            pl.Series(dates, dtype=pl.Date).cast(s).alias("diagnosis_date"),
            _gather(HISTOLOGY, hist, s).alias("histology"),
            _gather(
                [*SITE_GIST, *SITE_STS], np.where(gist, site_g, len(SITE_GIST) + site_s), s
            ).alias("primary_site"),
            _num(size, miss["size_cm"], f64).alias("size_cm"),
            _gather(DEPTH, depth, s, miss["depth"]).alias("depth"),
            _gather(GRADE, grade, s, gist | miss["grade"]).alias("grade"),
            _gather(NODES, nodes, s, miss["nodes"]).alias("nodes"),
            _gather(METASTASIS, meta, s).alias("metastasis"),
            _gather(BURDEN, burden, s, ~m1).alias("metastatic_burden"),
            _gather(MET_SITES, sites, ls, ~m1).alias("metastatic_sites"),
            _gather(RESECTABILITY, resect, s).alias("resectability"),
            _gather(DISEASE, disease, s).alias("disease_status"),
            _gather(EXTENT, extent, s, ~progressive).alias("progression_extent"),
            _num(mitoses, ~gist | miss["mitotic_rate_per_5mm2"], f64).alias(
                "mitotic_rate_per_5mm2"
            ),
            _gather(RUPTURE, rupture, b, ~gist).alias("tumour_rupture"),
            _gather(RESECTION, resection, s, ~gist).alias("resection_status"),
            _gather(KIT, kit, s, ~gist).alias("kit_mutation"),
            _gather(PDGFRA, pdgfra, s, ~gist).alias("pdgfra_mutation"),
            _gather(TRI["gist_sdh"], sdh, b, ~gist).alias("sdh_deficient"),
            _gather(TRI["gist_nf1"], nf1, b, ~gist).alias("nf1_mutation"),
            _gather(TRI["gist_braf"], braf, b, ~gist).alias("braf_v600e"),
            _gather(TRI["ntrk"], ntrk, b).alias("ntrk_fusion"),
            _gather([*PRIOR, PRIOR_GIST_PROGRESSIVE], prior, ls).alias("prior_therapies"),
            _gather(COMORBIDITIES, comorb, ls).alias("comorbidities"),
            _num(age, miss["age_years"], i64).alias("age_years"),
            _gather(ECOG, ecog, i64, miss["ecog"]).alias("ecog"),
            _gather([*PROGRESSED_ON, PRIOR_GIST_PROGRESSIVE], progressed, ls).alias(
                "progressed_on"
            ),
            _gather(INTOLERANT_OF, intolerant, ls).alias("intolerant_of"),
        ]
    )

    # delivered treatment, from the patient's group (the knowledge base decides the group)
    from sarcoma_cds.cohort.evaluate import evaluate, prepare

    res = evaluate(prepare(facts.with_columns(pl.lit(None, ls).alias("delivered")), kb, slots=1))
    items = all_items(kb)
    table = [
        [it] for it in items
    ]  # rows 0..len(items)-1: the random item; then each group's choices
    start: dict[str, int] = {}
    count: dict[str, int] = {}
    for g, ch in concordant_choices(kb).items():
        start[g], count[g] = len(table), len(ch)
        table.extend(ch)
    group = res.get_column("group").cast(s)
    g_start = group.replace_strict(start, return_dtype=i64).fill_null(-1).to_numpy()
    g_count = group.replace_strict(count, return_dtype=i64).fill_null(0).to_numpy()
    follows = (g_start >= 0) & ~(disc < discordance_rate)
    idx = np.where(
        follows, g_start + (pick * g_count).astype(np.int64), (pick * len(items)).astype(np.int64)
    )
    out = facts.with_columns(pl.Series("delivered", table, dtype=ls).gather(idx))
    if invalid_rate > 0:
        out = out.with_columns(pl.when(pl.Series(bad < invalid_rate)).then(pl.lit(INVALID_GRADE))
                               .otherwise(pl.col("grade")).alias("grade"))
    return out


def write(df: Any, path: str | Path) -> None:
    """CSV (lists ';'-separated), Parquet or JSONL, by the file's extension."""
    import polars as pl

    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".csv":
        lists = [c for c, t in df.schema.items() if isinstance(t, pl.List)]
        df.with_columns(
            [
                pl.when(pl.col(c).list.len() == 0)
                .then(pl.lit("[]"))
                .otherwise(pl.col(c).list.join(";"))
                .alias(c)
                for c in lists
            ]
        ).write_csv(p)
    elif suffix in (".parquet", ".pq"):
        typed(df).write_parquet(p)
    elif suffix in (".jsonl", ".ndjson"):
        df.write_ndjson(p)
    else:
        raise ValueError(f"{p.name}: use .csv, .parquet or .jsonl")


def typed(df: Any) -> Any:
    """The cohort with Parquet's own types: each categorical fact as the contract's vocabulary
    (an Enum, stored dictionary-encoded) when every value is in it, and the diagnosis date as a
    date. Readers get typed columns, and ``concordance`` need not check values the type already
    guarantees. Columns with a value outside the vocabulary (``invalid_rate``) stay text."""
    import polars as pl

    from sarcoma_cds.cohort.compiler import FACTS

    cats = [
        name
        for name, (kind, _) in FACTS.items()
        if kind == "cat" and df.schema.get(name) == pl.Utf8
    ]
    inside = df.select(
        [(pl.col(c).is_in(list(FACTS[c][1])) | pl.col(c).is_null()).all() for c in cats]
    ).row(0)
    out = [
        pl.col(c).cast(pl.Enum(list(FACTS[c][1]))) for c, ok in zip(cats, inside, strict=True) if ok
    ]
    if df.schema.get("diagnosis_date") == pl.Utf8:
        out.append(pl.col("diagnosis_date").str.to_date("%Y-%m-%d"))
    return df.with_columns(out)

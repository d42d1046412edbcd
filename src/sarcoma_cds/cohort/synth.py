"""Synthetic cohorts: realistic, documented distributions, deterministic per seed.

Distributions (see docs/cohort.md for the table): histology (GIST 20 %, adult-type
soft-tissue sarcoma 77 %, out-of-scope histologies 3 %), site by histology, size
log-normal (median ~6.7 cm), FNCLCC grade, nodes, metastasis (M1 17 %), resectability,
disease status, GIST mitotic rate and genotype (KIT exon 11 65 %, ...), NTRK/SDH/BRAF/NF1
status mostly untested, per-fact missingness, 8 centres, diagnosis 2015-2024.

Delivered treatment: with probability ``1 - discordance_rate`` the first-line step (or
one of its regimens when the step is drug-only) of one of the patient's group's pathways,
sometimes with the next step; otherwise a random treatment or regimen of the whole
knowledge base. The patient group comes from evaluating the knowledge base on the
generated facts (vectorised engine), so "concordant by construction" follows the
current rules. Only Python's ``random.Random(seed)`` draws numbers: same seed, same cohort.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from sarcoma_cds.domain.knowledge import CompiledKB

HISTOLOGY = {
    "gist": 20, "liposarcoma_well_differentiated": 6, "liposarcoma_dedifferentiated": 7,
    "liposarcoma_myxoid": 5, "liposarcoma_pleomorphic": 2, "liposarcoma": 2, "leiomyosarcoma": 14,
    "undifferentiated_pleomorphic_sarcoma": 14, "synovial_sarcoma": 5, "myxofibrosarcoma": 8,
    "malignant_peripheral_nerve_sheath_tumour": 3, "angiosarcoma": 3, "other_soft_tissue_sarcoma": 8,
    "rhabdomyosarcoma": 1, "desmoid_tumour": 1, "dermatofibrosarcoma_protuberans": 1,
}
SITE_GIST = {"stomach": 55, "small_intestine": 26, "duodenum": 5, "rectum": 4, "colon": 2, "oesophagus": 1,
             "other_gi": 3, "intra_abdominal": 3, "retroperitoneum": 1}
SITE_STS = {"lower_extremity": 40, "upper_extremity": 12, "trunk": 15, "retroperitoneum": 16,
            "intra_abdominal": 6, "small_intestine": 1, "colon": 1, "head_neck": 5, "other": 4}
GRADE = {"1": 20, "2": 30, "3": 45, "X": 5}
NODES = {"N0": 84, "N1": 4, "NX": 12}
METASTASIS = {"M0": 81, "M1": 17, None: 2}
BURDEN = {"oligometastatic": 40, "disseminated": 60}
MET_SITES = {"lung": 40, "lung;bone": 10, "liver": 20, "liver;peritoneum": 12, "peritoneum": 8, "bone": 6,
             "lung;liver": 4}
RESECTABILITY = {"resectable": 64, "resectable_significant_morbidity": 14, "unresectable": 16, None: 6}
DISEASE = {"primary": 80, "recurrent": 11, "progressive": 5, None: 4}
RESECTION = {"not_resected": 70, "R0": 20, "R1": 6, "R2": 2, None: 2}
KIT = {"exon_11": 65, "exon_9": 9, "exon_13": 1, "exon_17": 1, "none": 13, "unknown": 5, None: 6}
PDGFRA = {"none": 72, "d842v": 6, "exon_18_sensitive": 2, "exon_12": 1, "exon_14": 1, "unknown": 6, None: 12}
TRI = {"gist_sdh": {True: 4, False: 56, None: 40}, "gist_braf": {True: 1, False: 49, None: 50},
       "gist_nf1": {True: 2, False: 38, None: 60}, "ntrk": {True: 1, False: 39, None: 60}}
CENTRES = {"Amsterdam": 14, "Berlin": 16, "Copenhagen": 8, "Dublin": 7, "Edinburgh": 10, "Florence": 13,
           "Geneva": 9, "Helsinki": 6, "Lyon": 17}
MISSING = {"size_cm": 0.06, "grade": 0.07, "nodes": 0.05, "mitotic_rate_per_5mm2": 0.10, "age_years": 0.03,
           "ecog": 0.2, "depth": 0.15}


def _pick(rng: random.Random, dist: dict[Any, int], n: int) -> list[Any]:
    return rng.choices(list(dist), weights=list(dist.values()), k=n)


def concordant_choices(kb: CompiledKB) -> dict[str, list[list[str]]]:
    """Per group, delivered-item lists that follow one of its pathways."""
    out: dict[str, list[list[str]]] = {}
    for gid, g in kb.groups.items():
        ch: list[list[str]] = []
        for pw in g.pathways:
            first = pw.steps[0]
            heads = (["+".join(o.drugs) for o in first.options if o.line == "primary"] or [first.treatment]) \
                if first.options_cover_step else [first.treatment]
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


def synth(n: int, seed: int = 0, discordance_rate: float = 0.15, kb: CompiledKB | None = None,
          invalid_rate: float = 0.0) -> Any:
    """A synthetic cohort as a Polars DataFrame (lists as list columns)."""
    import polars as pl

    from sarcoma_cds.kb.loader import load_kb

    kb = kb or load_kb()
    rng = random.Random(seed)
    u = lambda: [rng.random() for _ in range(n)]  # noqa: E731
    hist = _pick(rng, HISTOLOGY, n)
    site_g, site_s = _pick(rng, SITE_GIST, n), _pick(rng, SITE_STS, n)
    df = pl.DataFrame({
        "patient_id": [f"P{seed}-{i:07d}" for i in range(n)],
        "centre": _pick(rng, CENTRES, n),
        "year": [2015 + int(x * 10) for x in u()],
        "doy": [1 + int(x * 365) for x in u()],
        "histology": hist,
        "_sg": site_g, "_ss": site_s,
        "size_cm": [min(60.0, max(0.3, round(rng.lognormvariate(1.9, 0.65), 1))) for _ in range(n)],
        "grade": _pick(rng, GRADE, n), "nodes": _pick(rng, NODES, n),
        "metastasis": _pick(rng, METASTASIS, n), "metastatic_burden": _pick(rng, BURDEN, n),
        "_ms": _pick(rng, MET_SITES, n),
        "resectability": _pick(rng, RESECTABILITY, n), "disease_status": _pick(rng, DISEASE, n),
        "_pe": [("limited" if x < 0.5 else "widespread") for x in u()],
        "mitotic_rate_per_5mm2": [round(rng.expovariate(1 / 5.0), 0) for _ in range(n)],
        "_rup": u(), "resection_status": _pick(rng, RESECTION, n),
        "kit_mutation": _pick(rng, KIT, n), "pdgfra_mutation": _pick(rng, PDGFRA, n),
        "sdh_deficient": _pick(rng, TRI["gist_sdh"], n), "braf_v600e": _pick(rng, TRI["gist_braf"], n),
        "nf1_mutation": _pick(rng, TRI["gist_nf1"], n), "ntrk_fusion": _pick(rng, TRI["ntrk"], n),
        "_pt": u(), "_cm": u(),
        "age_years": [max(5, min(95, int(rng.gauss(58, 15)))) for _ in range(n)],
        "ecog": _pick(rng, {0: 40, 1: 40, 2: 15, 3: 5}, n),
        "depth": _pick(rng, {"deep": 80, "superficial": 20}, n),
        "_disc": u(), "_pick": u(), "_bad": u(),
        **{f"_m_{k}": u() for k in MISSING},
    }, schema_overrides={"metastasis": pl.Utf8, "resectability": pl.Utf8, "disease_status": pl.Utf8,
                         "resection_status": pl.Utf8, "kit_mutation": pl.Utf8, "pdgfra_mutation": pl.Utf8,
                         "sdh_deficient": pl.Boolean, "braf_v600e": pl.Boolean, "nf1_mutation": pl.Boolean,
                         "ntrk_fusion": pl.Boolean})
    gist = pl.col("histology") == "gist"
    m1 = pl.col("metastasis") == "M1"
    prior = (pl.when(pl.col("_pt") < 0.5).then(None)
             .when(gist & (pl.col("disease_status") == "progressive")).then(pl.lit("imatinib_standard_dose"))
             .when(pl.col("_pt") < 0.6).then(pl.lit("anthracycline"))
             .when(pl.col("_pt") < 0.65).then(pl.lit("radiotherapy;surgery"))
             .otherwise(pl.lit("")))
    df = df.with_columns(
        pl.when(gist).then(pl.col("_sg")).otherwise(pl.col("_ss")).alias("primary_site"),
        pl.date(pl.col("year"), 1, 1).dt.offset_by(pl.format("{}d", pl.col("doy") - 1)).cast(pl.Utf8)
        .alias("diagnosis_date"),
        pl.when(gist).then(None).otherwise(pl.col("grade")).alias("grade"),
        pl.when(m1).then(pl.col("metastatic_burden")).otherwise(None).alias("metastatic_burden"),
        pl.when(m1).then(pl.col("_ms")).otherwise(None).str.split(";").alias("metastatic_sites"),
        pl.when(pl.col("disease_status") == "progressive").then(pl.col("_pe")).otherwise(None)
        .alias("progression_extent"),
        pl.when(gist).then(pl.col("mitotic_rate_per_5mm2")).otherwise(None).alias("mitotic_rate_per_5mm2"),
        pl.when(~gist).then(None).when(pl.col("_rup") < 0.05).then(True).when(pl.col("_rup") < 0.75)
        .then(False).otherwise(None).alias("tumour_rupture"),
        pl.when(gist).then(pl.col("resection_status")).otherwise(None).alias("resection_status"),
        *[pl.when(gist).then(pl.col(c)).otherwise(None).alias(c)
          for c in ("kit_mutation", "pdgfra_mutation", "sdh_deficient", "braf_v600e", "nf1_mutation")],
        prior.str.split(";").list.eval(pl.element().filter(pl.element() != "")).alias("prior_therapies"),
        pl.when(pl.col("_cm") < 0.6).then(None).when(pl.col("_cm") < 0.63).then(pl.lit(["heart_failure"]))
        .when(pl.col("_cm") < 0.64).then(pl.lit(["uncorrectable_coagulopathy"]))
        .otherwise(pl.lit([], dtype=pl.List(pl.Utf8))).alias("comorbidities"),
    ).with_columns(
        *[pl.when(pl.col(f"_m_{k}") < p).then(None).otherwise(pl.col(k)).alias(k) for k, p in MISSING.items()],
    )
    facts_cols = ["patient_id", "centre", "diagnosis_date", "histology", "primary_site", "size_cm", "depth",
                  "grade", "nodes", "metastasis", "metastatic_burden", "metastatic_sites", "resectability",
                  "disease_status", "progression_extent", "mitotic_rate_per_5mm2", "tumour_rupture",
                  "resection_status", "kit_mutation", "pdgfra_mutation", "sdh_deficient", "nf1_mutation",
                  "braf_v600e", "ntrk_fusion", "prior_therapies", "comorbidities", "age_years", "ecog"]
    facts = df.select(facts_cols).with_columns(pl.col("age_years").cast(pl.Int64), pl.col("ecog").cast(pl.Int64))
    # delivered treatment, from the patient's group (the knowledge base decides the group)
    from sarcoma_cds.cohort.evaluate import evaluate, prepare

    res = evaluate(prepare(facts.with_columns(pl.lit(None, pl.List(pl.Utf8)).alias("delivered")), kb, slots=1))
    choices = concordant_choices(kb)
    items = all_items(kb)
    groups = res.get_column("group").to_list()
    disc = df.get_column("_disc").to_list()
    pick = df.get_column("_pick").to_list()
    delivered: list[list[str]] = []
    for g, d, p in zip(groups, disc, pick, strict=True):
        if g is None or d < discordance_rate:
            delivered.append([items[int(p * len(items))]])
        else:
            ch = choices[g]
            delivered.append(list(ch[int(p * len(ch))]))
    out = facts.with_columns(pl.Series("delivered", delivered, dtype=pl.List(pl.Utf8)))
    if invalid_rate > 0:
        bad = df.get_column("_bad") < invalid_rate
        out = out.with_columns(pl.when(bad).then(pl.lit("grade_4")).otherwise(pl.col("grade")).alias("grade"))
    return out


def write(df: Any, path: str | Path) -> None:
    """CSV (lists ';'-separated), Parquet or JSONL, by the file's extension."""
    import polars as pl

    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".csv":
        lists = [c for c, t in df.schema.items() if isinstance(t, pl.List)]
        df.with_columns([pl.when(pl.col(c).list.len() == 0).then(pl.lit("[]")).otherwise(pl.col(c).list.join(";"))
                         .alias(c) for c in lists]).write_csv(p)
    elif suffix in (".parquet", ".pq"):
        df.write_parquet(p)
    elif suffix in (".jsonl", ".ndjson"):
        df.write_ndjson(p)
    else:
        raise ValueError(f"{p.name}: use .csv, .parquet or .jsonl")

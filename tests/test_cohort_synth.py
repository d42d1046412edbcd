"""Synthetic cohort: the documented distributions hold and the rows obey the contract.

The dictionaries at the top of ``synth.py`` are the documentation, so the expected shares
here are computed from them, not copied.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

pl = pytest.importorskip("polars")
pytest.importorskip("numpy")

from sarcoma_cds import InvalidFacts, load_kb, parse_facts  # noqa: E402
from sarcoma_cds.cohort import synth as S  # noqa: E402
from sarcoma_cds.cohort.evaluate import evaluate, prepare  # noqa: E402
from sarcoma_cds.domain.facts import FACT_FIELDS  # noqa: E402

KB = load_kb()


@pytest.fixture(scope="module")
def cohort() -> Any:
    return S.synth(20_000, seed=2024, kb=KB)


def _share(dist: dict[Any, int], key: Any) -> float:
    return dist[key] / sum(dist.values())


def _observed(col: Any, key: Any) -> float:
    return float((col.is_null() if key is None else (col == key).fill_null(False)).mean())


@pytest.mark.parametrize(
    ("column", "dist", "only_gist"),
    [
        ("histology", S.HISTOLOGY, None),
        ("centre", S.CENTRES, None),
        ("metastasis", S.METASTASIS, None),
        ("resectability", S.RESECTABILITY, None),
        ("disease_status", S.DISEASE, None),
        ("ntrk_fusion", S.TRI["ntrk"], None),
        ("primary_site", S.SITE_GIST, True),
        ("kit_mutation", S.KIT, True),
        ("pdgfra_mutation", S.PDGFRA, True),
        ("resection_status", S.RESECTION, True),
        ("sdh_deficient", S.TRI["gist_sdh"], True),
        ("tumour_rupture", S.RUPTURE, True),
        ("primary_site", S.SITE_STS, False),
    ],
)
def test_marginal_shares_match_the_documented_weights(
    cohort: Any, column: str, dist: dict[Any, int], only_gist: bool | None
) -> None:
    df = (
        cohort if only_gist is None else cohort.filter((pl.col("histology") == "gist") == only_gist)
    )
    for key in dist:
        got, want = _observed(df.get_column(column), key), _share(dist, key)
        assert abs(got - want) < 0.02 + 0.05 * want, (column, key, got, want)


def test_conditional_structure_and_missingness(cohort: Any) -> None:
    gist = cohort.get_column("histology") == "gist"
    g, other = cohort.filter(gist), cohort.filter(~gist)
    # GIST-only facts are absent elsewhere; grade is absent for GIST
    for c in ("mitotic_rate_per_5mm2", "tumour_rupture", "resection_status", "kit_mutation",
              "pdgfra_mutation", "sdh_deficient", "braf_v600e", "nf1_mutation"):
        assert other.get_column(c).null_count() == other.height, c
    assert g.get_column("grade").null_count() == g.height
    # M1 details only with M1, progression extent only with progressive disease
    m1 = cohort.filter(pl.col("metastasis") == "M1")
    assert cohort.filter(pl.col("metastatic_burden").is_not_null()).height == m1.height
    assert cohort.filter(pl.col("metastatic_sites").is_not_null()).height == m1.height
    assert (
        abs(
            _observed(m1.get_column("metastatic_burden"), "oligometastatic")
            - _share(S.BURDEN, "oligometastatic")
        )
        < 0.04
    )
    prog = cohort.get_column("disease_status") == "progressive"
    assert cohort.filter(~prog).get_column("progression_extent").null_count() == int((~prog).sum())
    # per-fact missingness (grade: among non-GIST; mitoses: among GIST)
    for c, df in (("size_cm", cohort), ("nodes", cohort), ("age_years", cohort), ("ecog", cohort),
                  ("depth", cohort), ("grade", other), ("mitotic_rate_per_5mm2", g)):
        got = df.get_column(c).null_count() / df.height
        assert abs(got - S.MISSING[c]) < 0.015 + 0.1 * S.MISSING[c], (c, got)
    # GIST with progressive disease and recorded prior therapies: imatinib
    gp = g.filter(
        pl.col("disease_status") == "progressive", pl.col("prior_therapies").is_not_null()
    )
    assert (
        gp.height > 0
        and gp.get_column("prior_therapies").to_list() == [[S.PRIOR_GIST_PROGRESSIVE]] * gp.height
    )
    assert (
        abs(
            cohort.get_column("prior_therapies").null_count() / cohort.height
            - _share(S.PRIOR, None)
        )
        < 0.02
    )
    # value formats
    assert cohort.get_column("patient_id").head(2).to_list() == ["P2024-0000000", "P2024-0000001"]
    dates = cohort.get_column("diagnosis_date")
    assert dates.str.contains(r"^\d{4}-\d{2}-\d{2}$").all()
    assert dates.min() >= "2015-01-01" and dates.max() <= "2024-12-31"
    size = cohort.get_column("size_cm").drop_nulls()
    assert size.min() >= 0.3 and size.max() <= 60 and abs(size.median() - 6.7) < 0.4
    age = cohort.get_column("age_years").drop_nulls()
    assert age.min() >= 5 and age.max() <= 95 and abs(age.mean() - 58) < 1.5


def test_rows_obey_the_contract_except_the_deliberately_invalid_ones() -> None:
    df = S.synth(3000, seed=8, invalid_rate=0.1, kb=KB)
    bad = df.get_column("grade") == S.INVALID_GRADE
    assert 0.07 < bad.mean() < 0.13
    for r, is_bad in zip(df.to_dicts(), bad.to_list(), strict=True):
        facts = {k: r[k] for k in FACT_FIELDS if r[k] is not None}
        if is_bad:
            with pytest.raises(InvalidFacts, match="grade"):
                parse_facts(facts)
        else:
            parse_facts(facts)
    # apart from the bad grade, the same cohort as without invalid rows
    clean = S.synth(3000, seed=8, kb=KB)
    assert df.drop("grade").equals(clean.drop("grade"))
    assert df.filter(~bad).equals(clean.filter(~bad))
    assert re.fullmatch(r"P8-\d{7}", df.get_column("patient_id")[-1])


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_delivered_follows_the_group_or_is_random(rate: float) -> None:
    df = S.synth(2000, seed=3, discordance_rate=rate, kb=KB)
    groups = evaluate(prepare(df, KB)).get_column("group").cast(pl.Utf8).to_list()
    choices, items = S.concordant_choices(KB), S.all_items(KB)
    for g, d in zip(groups, df.get_column("delivered").to_list(), strict=True):
        if rate == 0.0 and g is not None:
            assert d in choices[g]
        else:
            assert len(d) == 1 and d[0] in items


def test_seeds() -> None:
    a = S.synth(300, seed=-3, kb=KB)
    assert a.equals(S.synth(300, seed=-3, kb=KB))
    assert not a.drop("patient_id").equals(S.synth(300, seed=3, kb=KB).drop("patient_id"))
    assert S.synth(0, kb=KB).columns == a.columns

"""Constant folding of the cohort IR: the folded plan computes exactly what the plan computes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pl = pytest.importorskip("polars")

from sarcoma_cds.cohort import ir  # noqa: E402
from sarcoma_cds.cohort.backends import to_polars  # noqa: E402
from sarcoma_cds.cohort.fold import Folder, fold_plan  # noqa: E402

DATA = pl.DataFrame({
    "i": pl.Series([0, 1, 2, None, 5, 3], dtype=pl.Int64),
    "j": pl.Series([None, 4, 2, 2, 0, 1], dtype=pl.Int64),
    "b": pl.Series([True, None, False, True, False, None], dtype=pl.Boolean),
})
INT_LITS = st.sampled_from([ir.Lit(None, "int"), ir.Lit(0), ir.Lit(1), ir.Lit(2), ir.Lit(7)])
BOOL_LITS = st.sampled_from([ir.TRUE, ir.FALSE, ir.NULL_BOOL])


def ints(bools: st.SearchStrategy[ir.E]) -> st.SearchStrategy[ir.E]:
    leaf = st.one_of(INT_LITS, st.sampled_from([ir.Col("i"), ir.Col("j")]))
    return st.recursive(
        leaf,
        lambda x: st.one_of(
            st.builds(ir.Arith, st.sampled_from(["&", "+", "-", "*"]), x, x),
            st.builds(lambda a, b: ir.Coalesce((a, b)), x, x),
            st.builds(lambda a, b, c: ir.Greatest((a, b, c)), x, x, x),
            st.builds(lambda a, b: ir.Least((a, b)), x, x),
            st.builds(lambda c, v, d: ir.Case(((c, v),), d), bools, x, x),
            st.builds(
                lambda c1, v1, c2, v2, d: ir.Case(((c1, v1), (c2, v2)), d), bools, x, bools, x, x
            ),
            st.builds(lambda a: ir.Lookup(a, (5, None, 6)), x),
        ),
        max_leaves=8,
    )


def bools_() -> st.SearchStrategy[ir.E]:
    leaf = st.one_of(BOOL_LITS, st.just(ir.Col("b")))
    simple_int = st.one_of(INT_LITS, st.sampled_from([ir.Col("i"), ir.Col("j")]))
    return st.recursive(
        leaf,
        lambda x: st.one_of(
            st.builds(lambda a, b: ir.And((a, b)), x, x),
            st.builds(lambda a, b, c: ir.Or((a, b, c)), x, x, x),
            st.builds(ir.Not, x),
            st.builds(ir.IsNull, st.one_of(x, simple_int)),
            st.builds(
                ir.Cmp, st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), simple_int, simple_int
            ),
            st.builds(lambda a, b: ir.Coalesce((a, b)), x, x),
        ),
        max_leaves=8,
    )


BOOLS = bools_()


def values(e: ir.E, kind: str) -> list[object]:
    dtype = pl.Boolean if kind == "bool" else pl.Int64
    out = DATA.select(to_polars(e).cast(dtype).alias("v"))
    # (an expression of literals only gives one row: it holds for every patient)
    return (
        out.get_column("v").to_list() if out.height == DATA.height else [out.item()] * DATA.height
    )


@settings(max_examples=300, deadline=None)
@given(st.one_of(ints(BOOLS).map(lambda e: ("int", e)), BOOLS.map(lambda e: ("bool", e))))
def test_folding_keeps_every_value(kind_e: tuple[str, ir.E]) -> None:
    kind, e = kind_e
    folded = Folder()(e)
    assert values(folded, kind) == values(e, kind)


def test_a_constant_column_is_not_computed_and_later_columns_read_the_constant() -> None:
    plan = ir.Plan(
        stage1=[ir.Layer([("c", ir.Coalesce((ir.Lit(None, "int"), ir.Lit(3)))),
                          ("x", ir.Col("i"))]),
                ir.Layer([("y", ir.Arith("+", ir.Col("c"), ir.Col("x")))])],
        stage2={}, stage2_default=[], outputs=["y"])
    folded = fold_plan(plan)
    names = [n for layer in folded.stage1 for n, _ in layer.columns]
    assert "c" not in names and "y" in names
    y = next(e for layer in folded.stage1 for n, e in layer.columns if n == "y")
    assert isinstance(y, ir.Arith) and isinstance(y.a, ir.Lit) and y.a.value == 3

"""A tiny, backend-neutral expression language for cohort evaluation.

The knowledge base's condition trees are translated once into these nodes
(:mod:`sarcoma_cds.cohort.compiler`); each backend (Polars, DuckDB SQL, PySpark)
turns the nodes into its own expressions (:mod:`sarcoma_cds.cohort.backends`).
Every backend has SQL's three-valued semantics for AND/OR/NOT and comparisons
with NULL, which is exactly the per-patient engine's Kleene logic.

Integers are 64-bit. A categorical fact is a bitmask (one bit per vocabulary
value; NULL = unknown); a derived fact known only as a set of possible values
has several bits set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class E:
    """Base node. Operators build nodes so translation code reads like the rules."""

    def __and__(self, o: E) -> E:
        return And((self, o))

    def __or__(self, o: E) -> E:
        return Or((self, o))

    def __invert__(self) -> E:
        return Not(self)

    def eq(self, o: Any) -> E:
        return Cmp("==", self, lift(o))

    def ne(self, o: Any) -> E:
        return Cmp("!=", self, lift(o))

    def lt(self, o: Any) -> E:
        return Cmp("<", self, lift(o))

    def le(self, o: Any) -> E:
        return Cmp("<=", self, lift(o))

    def gt(self, o: Any) -> E:
        return Cmp(">", self, lift(o))

    def ge(self, o: Any) -> E:
        return Cmp(">=", self, lift(o))

    def band(self, o: Any) -> E:
        return Arith("&", self, lift(o))

    def add(self, o: Any) -> E:
        return Arith("+", self, lift(o))

    def sub(self, o: Any) -> E:
        return Arith("-", self, lift(o))

    def mul(self, o: Any) -> E:
        return Arith("*", self, lift(o))

    def div(self, o: Any) -> E:
        """Integer division of non-negative integers."""
        return Arith("//", self, lift(o))

    def mod(self, o: Any) -> E:
        return Arith("%", self, lift(o))

    def is_null(self) -> E:
        return IsNull(self)

    def not_null(self) -> E:
        return Not(IsNull(self))

    def fill(self, v: Any) -> E:
        return Coalesce((self, lift(v)))


@dataclass(frozen=True, eq=False)
class Col(E):
    name: str


@dataclass(frozen=True, eq=False)
class Lit(E):
    value: Any  # int, float, bool or None
    kind: str = "int"  # int | float | bool


@dataclass(frozen=True, eq=False)
class And(E):
    args: tuple[E, ...]


@dataclass(frozen=True, eq=False)
class Or(E):
    args: tuple[E, ...]


@dataclass(frozen=True, eq=False)
class Not(E):
    arg: E


@dataclass(frozen=True, eq=False)
class Cmp(E):
    op: str
    a: E
    b: E


@dataclass(frozen=True, eq=False)
class Arith(E):
    op: str
    a: E
    b: E


@dataclass(frozen=True, eq=False)
class IsNull(E):
    arg: E


@dataclass(frozen=True, eq=False)
class Coalesce(E):
    args: tuple[E, ...]


@dataclass(frozen=True, eq=False)
class Case(E):
    """First branch whose condition is TRUE (NULL counts as not true), else ``default``."""

    branches: tuple[tuple[E, E], ...]
    default: E


@dataclass(frozen=True, eq=False)
class Greatest(E):
    """Largest non-NULL argument; NULL when all are NULL."""

    args: tuple[E, ...]


@dataclass(frozen=True, eq=False)
class Least(E):
    args: tuple[E, ...]


@dataclass(frozen=True, eq=False)
class Lookup(E):
    """``table[index]`` for a constant integer table; NULL index or entry gives NULL."""

    index: E
    table: tuple[int | None, ...]


TRUE = Lit(True, "bool")
FALSE = Lit(False, "bool")
NULL_INT = Lit(None, "int")
NULL_BOOL = Lit(None, "bool")


def lift(v: Any) -> E:
    if isinstance(v, E):
        return v
    if isinstance(v, bool):
        return Lit(v, "bool")
    if isinstance(v, int):
        return Lit(v, "int")
    if isinstance(v, float):
        return Lit(v, "float")
    raise TypeError(f"cannot lift {v!r}")


def col(name: str) -> E:
    return Col(name)


def lit(v: Any) -> E:
    return lift(v)


def all_of(args: list[E]) -> E:
    if not args:
        return TRUE
    return args[0] if len(args) == 1 else And(tuple(args))


def any_of(args: list[E]) -> E:
    if not args:
        return FALSE
    return args[0] if len(args) == 1 else Or(tuple(args))


def case(branches: list[tuple[E, Any]], default: Any = None, kind: str = "int") -> E:
    d = Lit(None, kind) if default is None else lift(default)
    if not branches:
        return d
    return Case(tuple((c, Lit(None, kind) if v is None else lift(v)) for c, v in branches), d)


def greatest(args: list[E]) -> E:
    if not args:
        return NULL_INT
    return args[0] if len(args) == 1 else Greatest(tuple(args))


def least(args: list[E]) -> E:
    if not args:
        return NULL_INT
    return args[0] if len(args) == 1 else Least(tuple(args))


def is_true(e: E) -> E:
    """TRUE -> TRUE; FALSE or NULL -> FALSE (never NULL)."""
    return Coalesce((e, FALSE))


@dataclass
class Layer:
    """Columns computed together; they may only read columns of earlier layers."""

    columns: list[tuple[str, E]]


@dataclass
class Plan:
    """Stage 1 (every row) and stage 2 (per patient group) layers, and the output columns."""

    stage1: list[Layer]
    stage2: dict[int, list[Layer]]  # group index -> layers, run on rows of that group only
    stage2_default: list[tuple[str, E]]  # columns for rows in no group
    outputs: list[str]


def _children(e: E) -> tuple[E, ...]:
    if isinstance(e, (Col, Lit)):
        return ()
    if isinstance(e, (Cmp, Arith)):
        return (e.a, e.b)
    if isinstance(e, (Not, IsNull)):
        return (e.arg,)
    if isinstance(e, Case):
        return (*(x for br in e.branches for x in br), e.default)
    if isinstance(e, Lookup):
        return (e.index,)
    if isinstance(e, (And, Or, Coalesce, Greatest, Least)):
        return e.args
    raise TypeError(e)


def columns_read(exprs: list[E]) -> set[str]:
    """Names of the columns the expressions read (each shared subtree visited once)."""
    seen: set[int] = set()
    out: set[str] = set()
    stack: list[E] = list(exprs)
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, Col):
            out.add(e.name)
        else:
            stack.extend(_children(e))
    return out


def stage2_reads(plan: Plan) -> tuple[dict[int, set[str]], set[str]]:
    """The stage-1 columns each group's stage 2 reads, and those the rows in no group read.

    Stage 2 is a function of these columns only, so rows that agree on them (and on the
    group) get the same stage-2 outputs: the Polars evaluator runs it once per distinct value.
    """
    per_group: dict[int, set[str]] = {}
    for g, layers in plan.stage2.items():
        made = {n for layer in layers for n, _ in layer.columns}
        per_group[g] = columns_read([e for layer in layers for _, e in layer.columns]) - made
    made = {n for n, _ in plan.stage2_default}
    return per_group, columns_read([e for _, e in plan.stage2_default]) - made

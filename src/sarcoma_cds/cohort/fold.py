"""Constant folding of a :class:`~sarcoma_cds.cohort.ir.Plan` (every backend gets the smaller plan).

Most regimen options have no personalisation rule, so their status columns are constants that
the compiler spells out as expressions (``greatest([])``, a case on a NULL, ...). Folding them
once here, with the IR's own three-valued semantics, means no backend computes or stores them
per patient. A column that folds to a literal is not computed at all: later references read
the literal instead (plan outputs stay columns). Shared subtrees stay shared.
"""

from __future__ import annotations

from typing import Any

from sarcoma_cds.cohort import ir
from sarcoma_cds.cohort.ir import E, Lit


def _kind(e: E) -> str | None:
    """The literal kind an expression evaluates to, when it can be told without the data."""
    if isinstance(e, Lit):
        return e.kind
    if isinstance(e, ir.And | ir.Or | ir.Not | ir.Cmp | ir.IsNull):
        return "bool"
    if isinstance(e, ir.Lookup):
        return "int"
    if isinstance(e, ir.Arith):
        return _kind(e.a) if _kind(e.a) == _kind(e.b) else None
    if isinstance(e, ir.Case):
        kinds = {_kind(v) for _, v in e.branches} | {_kind(e.default)}
        return kinds.pop() if len(kinds) == 1 else None
    if isinstance(e, ir.Coalesce | ir.Greatest | ir.Least):
        kinds = {_kind(a) for a in e.args}
        return kinds.pop() if len(kinds) == 1 else None
    return None


def _null(kind: str | None) -> Lit | None:
    return None if kind is None else Lit(None, kind)


def _cmp(op: str, a: Any, b: Any) -> bool:
    return bool(
        {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
    )


class Folder:
    """Folds expressions given the columns already known to be constant (``env``)."""

    def __init__(self, env: dict[str, Lit] | None = None) -> None:
        self.env: dict[str, Lit] = dict(env or {})
        self.memo: dict[int, tuple[E, E]] = {}

    def __call__(self, e: E) -> E:
        hit = self.memo.get(id(e))
        if hit is not None and hit[0] is e:
            return hit[1]
        out = self._fold(e)
        self.memo[id(e)] = (e, out)  # (the node is kept alive with its entry: its id is not reused)
        return out

    def _fold(self, e: E) -> E:
        if isinstance(e, ir.Col):
            return self.env.get(e.name, e)
        if isinstance(e, Lit):
            return e
        if isinstance(e, ir.And | ir.Or):
            absorbing = isinstance(e, ir.Or)  # TRUE absorbs OR, FALSE absorbs AND
            args: list[E] = []
            for a in map(self, e.args):
                if isinstance(a, Lit) and a.value is not None:
                    if bool(a.value) is absorbing:
                        return Lit(absorbing, "bool")
                    continue  # the neutral element
                args.append(a)
            if not args:
                return Lit(not absorbing, "bool")
            if all(isinstance(a, Lit) for a in args):  # only NULLs left
                return Lit(None, "bool")
            return args[0] if len(args) == 1 else type(e)(tuple(args))
        if isinstance(e, ir.Not):
            a = self(e.arg)
            if isinstance(a, Lit):
                return Lit(None if a.value is None else not a.value, "bool")
            return e if a is e.arg else ir.Not(a)
        if isinstance(e, ir.IsNull):
            a = self(e.arg)
            if isinstance(a, Lit):
                return Lit(a.value is None, "bool")
            return e if a is e.arg else ir.IsNull(a)
        if isinstance(e, ir.Cmp | ir.Arith):
            a, b = self(e.a), self(e.b)
            if isinstance(a, Lit) and isinstance(b, Lit):
                if isinstance(e, ir.Cmp):
                    return Lit(
                        None
                        if a.value is None or b.value is None
                        else _cmp(e.op, a.value, b.value),
                        "bool",
                    )
                k = _kind(e)
                if k is not None and (a.value is None or b.value is None):
                    return Lit(None, k)
                if k == "int" and not (e.op in ("//", "%") and b.value == 0):
                    x, y = int(a.value), int(b.value)
                    return Lit({"&": x & y, "+": x + y, "-": x - y, "*": x * y,
                                "//": x // y if y else 0, "%": x % y if y else 0}[e.op], "int")
            return e if (a is e.a and b is e.b) else type(e)(e.op, a, b)
        if isinstance(e, ir.Coalesce):
            cargs: list[E] = []
            for a in map(self, e.args):
                if isinstance(a, Lit) and a.value is None:
                    continue
                cargs.append(a)
                if isinstance(a, Lit):
                    break  # a non-NULL literal: nothing after it is reached
            if not cargs:
                return _null(_kind(e)) or e
            return cargs[0] if len(cargs) == 1 else ir.Coalesce(tuple(cargs))
        if isinstance(e, ir.Case):
            branches: list[tuple[E, E]] = []
            default = None
            for c, v in e.branches:
                fc = self(c)
                if isinstance(fc, Lit):
                    if fc.value is None or fc.value is False:
                        continue  # never taken
                    default = self(v)  # always taken: the branches after it are never reached
                    break
                branches.append((fc, self(v)))
            if default is None:
                default = self(e.default)
            if not branches:
                return default
            kinds = {_kind(v) for _, v in branches} | {_kind(default)}
            if len(kinds) > 1 and None not in kinds:
                return e  # (mixed kinds: leave as written)
            return ir.Case(tuple(branches), default)
        if isinstance(e, ir.Greatest | ir.Least):
            gargs = [a for a in map(self, e.args) if not (isinstance(a, Lit) and a.value is None)]
            if not gargs:
                return _null(_kind(e)) or e
            if all(isinstance(a, Lit) for a in gargs):
                vals = [a.value for a in gargs if isinstance(a, Lit)]
                return Lit(
                    max(vals) if isinstance(e, ir.Greatest) else min(vals), _kind(gargs[0]) or "int"
                )
            return gargs[0] if len(gargs) == 1 else type(e)(tuple(gargs))
        if isinstance(e, ir.Lookup):
            i = self(e.index)
            if isinstance(i, Lit):
                if i.value is None:
                    return Lit(None, "int")
                if 0 <= int(i.value) < len(e.table):
                    return Lit(e.table[int(i.value)], "int")
                return e
            return e if i is e.index else ir.Lookup(i, e.table)
        return e

    def layers(self, layers: list[ir.Layer], keep: set[str]) -> list[ir.Layer]:
        """Fold each layer's columns; constant columns become literals for later layers (and are
        dropped unless in ``keep``)."""
        out: list[ir.Layer] = []
        for layer in layers:
            cols: list[tuple[str, E]] = []
            for name, e in layer.columns:
                f = self(e)
                if isinstance(f, Lit):
                    self.env[name] = f
                    if name not in keep:
                        continue
                cols.append((name, f))
            if cols:
                out.append(ir.Layer(cols))
        return out


def fold_plan(plan: ir.Plan) -> ir.Plan:
    keep = set(plan.outputs)
    first = Folder()
    stage1 = first.layers(plan.stage1, keep | _read_by_stage2(plan))
    stage2 = {}
    for g, layers in plan.stage2.items():
        stage2[g] = Folder(first.env).layers(layers, keep)
    last = Folder(first.env)
    default = [(n, last(e)) for n, e in plan.stage2_default]
    return ir.Plan(stage1, stage2, default, plan.outputs)


def _read_by_stage2(plan: ir.Plan) -> set[str]:
    """Stage-1 columns stage 2 reads: kept as columns (stage 2 is folded separately per group)."""
    exprs = [e for layers in plan.stage2.values() for layer in layers for _, e in layer.columns]
    return ir.columns_read(exprs + [e for _, e in plan.stage2_default])

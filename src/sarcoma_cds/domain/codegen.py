"""Condition trees -> generated Python functions, built once at load.

Why generate code: the rule data are validated models; walking them (or calling a
closure per node) per patient costs ~10x more than straight-line code (measured,
see docs/adr/0004-compiled-rules.md). The generator emits one small function per
logical node, with leaf tests inlined, in three-valued (Kleene) logic: each
function returns True, False or None (cannot tell). Only validated constants from
the knowledge base reach the generated source -- via a constants table, never as
text -- so no data is ever evaluated as code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sarcoma_cds.domain.kb_models import Condition

Tri = bool | None
TestFn = Callable[[Mapping[str, Any]], Tri]

#: Facts that may hold a frozenset of still-possible values (derived from tables).
SET_VALUED = frozenset({"stage_group", "gist_risk_nih", "gist_risk_afip"})


class _Gen:
    def __init__(self, defs: Mapping[str, Condition], facts: frozenset[str]) -> None:
        self.defs = defs
        self.facts = facts
        self.consts: dict[str, Any] = {}
        self.funcs: list[str] = []
        self.n = 0
        self.def_names: dict[str, str] = {}

    def const(self, value: Any) -> str:
        name = f"K{len(self.consts)}"
        self.consts[name] = value
        return name

    def leaf(self, c: Condition, out: str) -> list[str]:
        """Statements that set ``out`` to the leaf's True/False/None."""
        fact = c.fact
        assert fact is not None
        if fact not in self.facts:
            raise ValueError(f"unknown fact {fact!r}")
        key = self.const(fact)
        lines = [f"x = v[{key}]"]
        if c.known is not None:
            if fact in SET_VALUED:
                test = "(x is not None and not (type(x) is frozenset and len(x) != 1))"
            else:
                test = "(x is not None)"
            lines.append(f"{out} = {test} is {bool(c.known)}")
            return lines
        if c.in_ is not None or c.eq is not None:
            values = frozenset(c.in_) if c.in_ is not None else frozenset([c.eq])
            k = self.const(values)
            if fact in SET_VALUED:
                lines.append(
                    f"{out} = None if x is None else ((True if x <= {k} else False if "
                    f"x.isdisjoint({k}) else None) if type(x) is frozenset else (x in {k}))"
                )
            else:
                lines.append(f"{out} = None if x is None else (x in {k})")
            return lines
        if c.contains is not None:
            k = self.const(c.contains)
            lines.append(f"{out} = None if x is None else ({k} in x)")
            return lines
        if c.count_ge is not None:
            k = self.const(int(c.count_ge))
            lines.append(f"{out} = None if x is None else (len(x) >= {k})")
            return lines
        op, bound = next(
            (o, getattr(c, o)) for o in ("gt", "ge", "lt", "le") if getattr(c, o) is not None
        )
        sym = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}[op]
        k = self.const(float(bound))
        lines.append(f"{out} = None if x is None else (x {sym} {k})")
        return lines

    def node(self, c: Condition, stack: tuple[str, ...] = ()) -> str:
        """Name of a generated function evaluating ``c``."""
        if c.ref is not None:
            if c.ref in stack:
                raise ValueError(f"definition {c.ref!r} refers to itself")
            if c.ref not in self.defs:
                raise ValueError(f"unknown definition {c.ref!r}")
            if c.ref not in self.def_names:
                self.def_names[c.ref] = self.node(self.defs[c.ref], (*stack, c.ref))
            return self.def_names[c.ref]
        self.n += 1
        name = f"f{self.n}"
        body: list[str] = []
        if c.all_ is not None or c.any_ is not None:
            is_all = c.all_ is not None
            kids = c.all_ if c.all_ is not None else c.any_
            assert kids is not None
            decisive = "False" if is_all else "True"
            body.append("u = False")
            for kid in kids:
                if kid.fact is not None:
                    body += self.leaf(kid, "r")
                else:
                    body.append(f"r = {self.node(kid, stack)}(v)")
                body.append(f"if r is {decisive}: return {decisive}")
                body.append("if r is None: u = True")
            body.append(f"return None if u else {'True' if is_all else 'False'}")
        elif c.not_ is not None:
            if c.not_.fact is not None:
                body += self.leaf(c.not_, "r")
            else:
                body.append(f"r = {self.node(c.not_, stack)}(v)")
            body.append("return None if r is None else not r")
        else:
            body += self.leaf(c, "r")
            body.append("return r")
        self.funcs.append(f"def {name}(v):\n    " + "\n    ".join(body))
        return name


class CodeGenerator:
    """Compiles many conditions into one module namespace (shared definitions)."""

    def __init__(self, defs: Mapping[str, Condition], facts: frozenset[str]) -> None:
        self._gen = _Gen(defs, facts)
        self._pending: list[tuple[str, Callable[[TestFn], None]]] = []

    def add(self, c: Condition, sink: Callable[[TestFn], None]) -> None:
        """Queue a condition; ``sink`` receives its function after :meth:`build`."""
        self._pending.append((self._gen.node(c), sink))

    def build(self) -> str:
        src = "\n\n".join(self._gen.funcs)
        namespace: dict[str, Any] = dict(self._gen.consts)
        exec(compile(src, "<sarcoma_cds rules>", "exec"), namespace)
        for name, sink in self._pending:
            sink(namespace[name])
        self._pending.clear()
        return src

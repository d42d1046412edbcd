"""Condition trees compiled once into closures, evaluated in three-valued logic.

A fact may be unknown (absent, or ``"unknown"``), or -- for derived facts such as
the AJCC stage group -- known only as a set of still-possible values. Every node
therefore answers ``True``, ``False`` or ``None`` (cannot tell), with Kleene's
rules for and/or/not. The same trees are translated to vectorised expressions by
``sarcoma_cds.cohort``; nothing here is interpreted per patient.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sarcoma_cds.domain.kb_checks import did_you_mean
from sarcoma_cds.domain.kb_models import Condition

Tri = bool | None
View = Mapping[str, Any]
Eval = Callable[[View], Tri]
Unknowns = Callable[[View], set[str]]


@dataclass(slots=True)
class Compiled:
    """A compiled condition: its evaluator, the fields it reads, and a why-unknown helper.

    ``test`` starts as the closure evaluator (the reference semantics) and is replaced
    by generated code at load (:mod:`sarcoma_cds.domain.codegen`); ``reference`` keeps
    the closure so tests can prove both agree.
    """

    test: Eval
    fields: frozenset[str]
    unknown_fields: Unknowns
    source: Condition
    reference: Eval | None = None


def _leaf(fact: str, fn: Callable[[Any], Tri]) -> tuple[Eval, Unknowns]:
    def test(view: View) -> Tri:
        v = view.get(fact)
        if v is None:
            return None
        return fn(v)

    def unknown(view: View) -> set[str]:
        return {fact} if test(view) is None else set()

    return test, unknown


def _member(values: frozenset[Any]) -> Callable[[Any], Tri]:
    def fn(v: Any) -> Tri:
        if isinstance(v, frozenset):  # a derived fact known only as a set of possibilities
            if v <= values:
                return True
            if v.isdisjoint(values):
                return False
            return None
        return v in values

    return fn


def _compare(op: str, bound: float) -> Callable[[Any], Tri]:
    if op == "gt":
        return lambda v: v > bound
    if op == "ge":
        return lambda v: v >= bound
    if op == "lt":
        return lambda v: v < bound
    return lambda v: v <= bound


def compile_condition(
    c: Condition, definitions: Mapping[str, Condition], known_facts: frozenset[str]
) -> Compiled:
    """Compile a condition; unknown fact names and undefined refs raise ``ValueError``."""
    return _compile(c, definitions, known_facts, ())


def _compile(
    c: Condition, defs: Mapping[str, Condition], facts: frozenset[str], seen: tuple[str, ...]
) -> Compiled:
    if c.ref is not None:
        if c.ref in seen:
            raise ValueError(f"definition {c.ref!r} refers to itself")
        if c.ref not in defs:
            raise ValueError(f"unknown definition {c.ref!r}" + did_you_mean(c.ref, defs))
        inner = _compile(defs[c.ref], defs, facts, (*seen, c.ref))
        return Compiled(inner.test, inner.fields, inner.unknown_fields, c)
    if c.all_ is not None or c.any_ is not None:
        kids = [_compile(k, defs, facts, seen) for k in (c.all_ or c.any_ or ())]
        tests = tuple(k.test for k in kids)
        fields = frozenset().union(*(k.fields for k in kids))
        test = _and(tests) if c.all_ is not None else _or(tests)

        def unknown_all(view: View) -> set[str]:
            if test(view) is not None:
                return set()
            out: set[str] = set()
            for k in kids:
                if k.test(view) is None:
                    out |= k.unknown_fields(view)
            return out

        return Compiled(test, fields, unknown_all, c)
    if c.not_ is not None:
        inner = _compile(c.not_, defs, facts, seen)
        t = inner.test

        def neg(view: View) -> Tri:
            r = t(view)
            return None if r is None else not r

        return Compiled(neg, inner.fields, inner.unknown_fields, c)

    fact = c.fact
    assert fact is not None
    if fact not in facts:
        raise ValueError(f"unknown fact {fact!r}" + did_you_mean(fact, facts))
    if c.in_ is not None:
        fn = _member(frozenset(c.in_))
    elif c.eq is not None:
        fn = _member(frozenset([c.eq]))
    elif c.contains is not None:
        item = c.contains
        fn = lambda v: item in v  # noqa: E731
    elif c.count_ge is not None:
        n = c.count_ge
        fn = lambda v: len(v) >= n  # noqa: E731
    elif c.known is not None:
        want = c.known

        def known_test(view: View) -> Tri:
            v = view.get(fact)
            is_known = v is not None and not (isinstance(v, frozenset) and len(v) != 1)
            return is_known == want

        return Compiled(known_test, frozenset([fact]), lambda view: set(), c)
    else:
        op, bound = next(
            (k, getattr(c, k)) for k in ("gt", "ge", "lt", "le") if getattr(c, k) is not None
        )
        fn = _compare(op, float(bound))
    test, unknown = _leaf(fact, fn)
    return Compiled(test, frozenset([fact]), unknown, c)


def _and(tests: tuple[Eval, ...]) -> Eval:
    def test(view: View) -> Tri:
        unknown = False
        for t in tests:
            r = t(view)
            if r is False:
                return False
            if r is None:
                unknown = True
        return None if unknown else True

    return test


def _or(tests: tuple[Eval, ...]) -> Eval:
    def test(view: View) -> Tri:
        unknown = False
        for t in tests:
            r = t(view)
            if r is True:
                return True
            if r is None:
                unknown = True
        return None if unknown else False

    return test

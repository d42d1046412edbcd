"""Conditions in plain words, for the people who review the guideline (``kb diff``, ``kb render``).

A reviewer reads "stage group is IA or IB and primary site is upper limb", not
``{fact: stage_group, in: [IA, IB]}``. Labels come from ``facts.yaml``; a named definition is
shown by its name in plain words, in quotes (its own condition is listed once, under
"Definitions"), so a long shared condition is not repeated at every use.
"""

from __future__ import annotations

from typing import Any

from sarcoma_cds.domain.kb_models import Condition
from sarcoma_cds.domain.knowledge import CompiledKB

_COMPARE = {"gt": "more than", "ge": "at least", "lt": "less than", "le": "at most"}


def _value(kb: CompiledKB, fact: str, v: Any) -> str:
    return kb.value_label(fact, v)


def _one_of(kb: CompiledKB, fact: str, values: tuple[Any, ...]) -> str:
    words = [_value(kb, fact, v) for v in values]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def words(c: Condition, kb: CompiledKB, nested: bool = False) -> str:
    """One condition as a sentence fragment; ``nested`` adds brackets around and/or groups."""
    if c.ref is not None:
        return f"'{c.ref.replace('_', ' ')}'"
    if c.all_ is not None or c.any_ is not None:
        kids = [words(k, kb, nested=True) for k in (c.all_ or c.any_ or ())]
        text = (" and " if c.all_ is not None else " or ").join(kids)
        return f"({text})" if nested and len(kids) > 1 else text
    if c.not_ is not None:
        return f"not {words(c.not_, kb, nested=True)}"
    fact = c.fact or "?"
    label = kb.label(fact)
    if c.in_ is not None:
        return f"{label} is {_one_of(kb, fact, c.in_)}"
    if c.eq is not None:
        return f"{label} is {_value(kb, fact, c.eq)}"
    if c.contains is not None:
        return f"{label} include {_value(kb, fact, c.contains)}"
    if c.count_ge is not None:
        return f"{label} has at least {c.count_ge} item{'s' if c.count_ge > 1 else ''}"
    if c.known is not None:
        return f"{label} is {'known' if c.known else 'not known'}"
    for op, text in _COMPARE.items():
        bound = getattr(c, op)
        if bound is not None:
            fl = kb.labels.get(fact)
            unit = fl.unit if fl is not None and fl.unit else ""
            return f"{label} {text} {bound:g}{' ' + unit if unit else ''}"
    return label

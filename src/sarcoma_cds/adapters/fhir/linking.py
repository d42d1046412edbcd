"""Which cancer does a resource belong to?

Why: real records hold more than one cancer (a breast cancer and a radiation-induced
angiosarcoma; a GIST found during colon cancer surgery). A staging, grade, size or variant
observation of the other cancer must never become a fact of the sarcoma. A resource is tied to
a cancer Condition through ``focus``, ``Condition.evidence.detail``, ``Condition.stage.assessment``,
``reasonReference``, membership of a group (``hasMember``, ``derivedFrom``,
``DiagnosticReport.result``)
that is tied, or, when nothing links it, through its body site or specimen site. With one cancer
in the record an unlinked resource is that cancer's; with several and no link, the answer is
"cannot tell" and the reader leaves the fact out and reports a gap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SARCOMA, OTHER, UNKNOWN = "sarcoma", "other", "unknown"


def _d(x: Any) -> dict[str, Any]:
    return x if isinstance(x, dict) else {}


def _l(x: Any) -> list[Any]:
    return x if isinstance(x, list) else []


def _refs(x: Any) -> list[str]:
    out = []
    for r in _l(x) if isinstance(x, list) else [x]:
        ref = _d(r).get("reference")
        if isinstance(ref, str) and ref:
            out.append(ref)
    return out


@dataclass
class Cancers:
    """The cancer Conditions of a record and the links of every other resource to them."""

    canon: Callable[[str], str | None]  # reference string -> canonical "Type/id" in the bundle
    sarcoma: set[str] = field(default_factory=set)
    other: dict[str, str] = field(default_factory=dict)  # ref -> label
    sites: dict[str, str | None] = field(default_factory=dict)  # cancer ref -> primary site
    claims: dict[str, set[str]] = field(default_factory=dict)  # resource ref -> cancer refs
    dangling: dict[str, list[str]] = field(default_factory=dict)  # resource ref -> unresolved refs
    _parent: dict[str, str] = field(default_factory=dict)
    _agg: tuple[dict[str, set[str]], dict[str, list[str]]] | None = None

    # ------------------------------------------------------------ union-find of linked resources
    def _find(self, x: str) -> str:
        root = x
        while self._parent.get(root, root) != root:
            root = self._parent[root]
        while self._parent.get(x, x) != root:  # path compression
            self._parent[x], x = root, self._parent[x]
        return root

    def _union(self, a: str, b: str) -> None:
        ra, rb = self._find(a), self._find(b)
        if ra != rb:
            self._parent[ra] = rb

    def claim(self, ref: str, target: str) -> None:
        c = self.canon(target)
        if c is None:
            if "Condition/" in target or target.startswith("urn:"):  # a cancer we cannot see
                self.dangling.setdefault(ref, []).append(target)
        elif c.startswith(("Patient/", "Practitioner/", "Organization/", "Encounter/")):
            return  # about the patient or the care episode: says nothing about which cancer
        elif c in self.sarcoma or c in self.other:
            self.claims.setdefault(ref, set()).add(c)
        elif c.startswith("Condition/"):
            self.dangling.setdefault(ref, []).append(target)
        else:  # e.g. focus on a BodyStructure or another Observation: a link, not a cancer
            self._union(ref, c)

    def link(self, a: str, target: str) -> None:
        c = self.canon(target)
        if c is not None:
            self._union(a, c)

    def learn(self, ref: str, res: dict[str, Any]) -> None:
        """Record the links one resource states (call for every resource after the cancers)."""
        rt = res.get("resourceType")
        if rt == "Condition" and ref in self.sarcoma | set(self.other):
            for ev in _l(res.get("evidence")):
                for t in _refs(_d(ev).get("detail")):
                    c = self.canon(t)
                    if c:
                        self.claims.setdefault(c, set()).add(ref)
            for st in _l(res.get("stage")):
                for t in _refs(_d(st).get("assessment")):
                    c = self.canon(t)
                    if c:
                        self.claims.setdefault(c, set()).add(ref)
            return
        for t in _refs(res.get("focus")) + _refs(res.get("reasonReference")):
            self.claim(ref, t)
        if rt == "BodyStructure":  # an mCODE tumour names its cancer in an extension
            for e in _l(res.get("extension")):
                if str(_d(e).get("url", "")).endswith(("related-condition", "condition-related")):
                    for t in _refs(_d(e).get("valueReference")):
                        self.claim(ref, t)
        for t in (
            _refs(res.get("hasMember")) + _refs(res.get("derivedFrom")) + _refs(res.get("result"))
        ):
            self.link(ref, t)

    # ------------------------------------------------------------ answer
    def owner(self, ref: str, site: str | None = None) -> tuple[str, str]:
        """(SARCOMA | OTHER | UNKNOWN, explanation) for a resource that needs its cancer."""
        if self._agg is None:  # once, after every link is known: linear in the record's size
            self._agg = ({}, {})
            for r, cs in self.claims.items():
                self._agg[0].setdefault(self._find(r), set()).update(cs)
            for r, ds in self.dangling.items():
                self._agg[1].setdefault(self._find(r), []).extend(ds)
        root = self._find(ref)
        claimed = self._agg[0].get(root, set())
        dangling = self._agg[1].get(root, [])
        sar, oth = claimed & self.sarcoma, claimed - self.sarcoma
        if sar and oth:
            return (
                UNKNOWN,
                f"linked to the sarcoma and to another cancer ({', '.join(sorted(oth))})",
            )
        if sar:
            return SARCOMA, ""
        if oth:
            labels = ", ".join(f"{o} ({self.other.get(o, 'another cancer')})" for o in sorted(oth))
            return OTHER, f"belongs to another cancer: {labels}"
        if dangling:
            return (
                UNKNOWN,
                f"refers to {', '.join(sorted(set(dangling)))}, which is not in the record",
            )
        if not self.other:
            return SARCOMA, ""
        if site is not None:
            same = {c for c in self.sarcoma if self.sites.get(c) == site}
            clash = {c for c in self.other if self.sites.get(c) == site}
            if same and not clash:
                return SARCOMA, ""
        return UNKNOWN, (
            "the record has more than one cancer and this resource is not linked to one "
            f"(no focus or evidence link): sarcoma {', '.join(sorted(self.sarcoma)) or '?'}, "
            f"other {', '.join(sorted(self.other))}"
        )

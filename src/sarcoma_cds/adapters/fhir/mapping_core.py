"""The mapping state shared by the readers: candidates with provenance and time, gaps, resolution.

Why: every reader (conditions, observations, genomics, therapies) proposes values for facts;
one place decides which value holds. The rule: the latest dated value wins; at the same date a
pathologic TNM category beats a clinical one; any other disagreement at the same time, or a
dated value that disagrees with an undated one, leaves the fact unset with a ``data_conflict``
gap. A value can also be "nothing to set" (e.g. a newer 'improved' disease status), which
supersedes older values without setting the fact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sarcoma_cds.adapters.fhir import terms as T

# A candidate value that supersedes older ones but sets nothing.
UNSET = "__unset__"


@dataclass
class MappingResult:
    facts: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    gaps: list[dict[str, str]] = field(default_factory=list)
    reported: dict[str, Any] = field(default_factory=dict)  # e.g. stage group as recorded

    def as_dict(self) -> dict[str, Any]:
        return {"facts": self.facts, "provenance": self.provenance, "gaps": self.gaps,
                "reported": self.reported}


@dataclass
class _Candidate:
    value: Any
    priority: int
    source: dict[str, str]
    when: str
    note: str = ""


class Mapper:
    def __init__(self) -> None:
        self.res = MappingResult()
        self.cands: dict[str, list[_Candidate]] = {}
        self.list_facts: dict[str, dict[str, list[dict[str, str]]]] = {}
        self.used: set[str] = set()
        self._gapped: set[str] = set()

    def gap(self, ref: str, element: str, problem: str) -> None:
        self.res.gaps.append({"resource": ref, "element": element, "problem": problem})
        self._gapped.add(ref)

    def has_gap(self, ref: str) -> bool:
        return ref in self._gapped

    def put(self, fact: str, value: Any, ref: str, element: str, priority: int = 0, when: str = "",
            note: str = "") -> None:
        rt, _, rid = ref.partition("/")
        src = {"resourceType": rt, "id": rid, "element": element}
        if when:
            src["date"] = when
        self.cands.setdefault(fact, []).append(_Candidate(value, priority, src, when, note))
        self.used.add(ref)

    def add_to_list(self, fact: str, value: str, ref: str, element: str) -> None:
        rt, _, rid = ref.partition("/")
        self.list_facts.setdefault(fact, {}).setdefault(value, []).append(
            {"resourceType": rt, "id": rid, "element": element})
        self.used.add(ref)

    @staticmethod
    def _name(c: _Candidate) -> str:
        v = "not set" if c.value == UNSET else repr(c.value)
        d = f" ({c.when})" if c.when else " (undated)"
        return f"{c.source['resourceType']}/{c.source['id']}={v}{d}"

    def _resolve_one(self, fact: str, cands: list[_Candidate]) -> None:
        dated = [c for c in cands if c.when]
        pool = cands
        if dated:
            latest = max(c.when for c in dated)
            pool = [c for c in dated if c.when == latest]
        top = max(c.priority for c in pool)
        best = [c for c in pool if c.priority == top]
        if len({repr(c.value) for c in best}) > 1:
            srcs = ", ".join(self._name(c) for c in best)
            self.gap(
                "Bundle",
                fact,
                f"data_conflict: resources disagree at the same time ({srcs}); fact left unset",
            )
            return
        win = best[0]
        if dated:
            undated = [c for c in cands if not c.when and repr(c.value) != repr(win.value)]
            if undated:
                srcs = ", ".join(self._name(c) for c in [win, *undated])
                self.gap(
                    "Bundle",
                    fact,
                    f"data_conflict: resources disagree and the undated ones cannot be "
                    f"placed in time ({srcs}); fact left unset",
                )
                return
        for c in cands:
            if repr(c.value) != repr(win.value):
                why = (
                    "an older value" if c.when and c.when < win.when else "a lower-precedence value"
                )
                self.gap(f"{c.source['resourceType']}/{c.source['id']}", fact,
                         f"superseded: {why} ({self._name(c)}) than {self._name(win)}")
        if win.value == UNSET:
            self.gap(f"{win.source['resourceType']}/{win.source['id']}", fact,
                     win.note or "the latest value sets nothing; fact left unset")
            return
        self.res.facts[fact] = win.value
        self.res.provenance[fact] = [c.source for c in cands if repr(c.value) == repr(win.value)]

    def resolve(self) -> None:
        for fact, cands in self.cands.items():
            self._resolve_one(fact, cands)
        for fact, vals in self.list_facts.items():
            self.res.facts[fact] = sorted(vals)
            self.res.provenance[fact] = [s for v in sorted(vals) for s in vals[v]]


# ------------------------------------------------------------------ plain-JSON helpers

def d_(x: Any) -> dict[str, Any]:
    return x if isinstance(x, dict) else {}


def l_(x: Any) -> list[Any]:
    return x if isinstance(x, list) else []


def s_(x: Any) -> str:
    return x if isinstance(x, str) else ""


def codings(cc: Any) -> list[tuple[str, str, str]]:
    """(canonical system, code, display) of each coding of a CodeableConcept."""
    out = []
    for c in l_(d_(cc).get("coding")):
        c = d_(c)
        code = s_(c.get("code")).strip()
        if code:
            out.append((T.system(s_(c.get("system"))), code, s_(c.get("display"))))
    return out


def has_code(cc: Any, table: Any) -> Any:
    """The value of the first coding of ``cc`` found in ``table`` (dict or set of (system,
    code))."""
    for sys_, code, _ in codings(cc):
        if (sys_, code) in table:
            return table[(sys_, code)] if isinstance(table, dict) else True
    return None


def code_str(cc: Any) -> str:
    parts = [f"{s or '?'}|{c}" for s, c, _ in codings(cc)]
    txt = s_(d_(cc).get("text"))
    return ", ".join(parts) or (f"text {txt!r}" if txt else "no coding")


def text_of(cc: Any) -> str:
    """All human-readable text of a CodeableConcept (text and displays)."""
    parts = [s_(d_(cc).get("text"))] + [d for _, _, d in codings(cc)]
    return " ".join(p for p in parts if p)


def ref_of(res: dict[str, Any], index: int) -> str:
    rt = s_(res.get("resourceType")) or "Resource"
    rid = s_(res.get("id"))
    return f"{rt}/{rid}" if rid else f"{rt}/entry[{index}]"


def profiles(res: dict[str, Any]) -> list[str]:
    return [p for p in l_(d_(res.get("meta")).get("profile")) if isinstance(p, str)]


def when_of(res: dict[str, Any]) -> str:
    """The date (YYYY-MM-DD) a resource describes; "" when it gives none."""
    for key in ("effectiveDateTime", "effectiveInstant", "onsetDateTime", "performedDateTime",
                "occurrenceDateTime", "recordedDate", "authoredOn", "issued", "dateAsserted"):
        v = s_(res.get(key))
        if v:
            return v[:10]
    for key in ("effectivePeriod", "onsetPeriod", "performedPeriod"):
        p = d_(res.get(key))
        v = s_(p.get("end")) or s_(p.get("start"))
        if v:
            return v[:10]
    return ""

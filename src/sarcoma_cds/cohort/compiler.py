"""Translate the knowledge base (the same rule trees the per-patient engine runs) into IR.

Nothing clinical is written here: every condition, table and outcome comes from the
:class:`~sarcoma_cds.domain.knowledge.CompiledKB`; this module only knows how the
per-patient engine combines them (classification order, case/unknown outcomes,
status severity) and re-expresses that as column expressions.

Encoded columns (produced by :mod:`sarcoma_cds.cohort.io`):

* ``f_<fact>``: categorical and boolean facts as a one-bit mask (``1 << vocabulary index``),
  list facts as the OR of their items' bits, numbers as floats; NULL = not given.
* ``i_primary_site``: the site's vocabulary index (for table lookups).
* ``d_0 .. d_{K-1}``: delivered items as item-vocabulary indices (-1: a valid drug
  combination no pathway lists), NULL past the end; ``n_items``.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Any

from sarcoma_cds.cohort.fold import fold_plan
from sarcoma_cds.cohort.ir import (
    FALSE,
    NULL_BOOL,
    NULL_INT,
    TRUE,
    E,
    Layer,
    Lookup,
    Plan,
    all_of,
    any_of,
    case,
    col,
    greatest,
    is_true,
    least,
    lit,
)
from sarcoma_cds.domain.engine import DERIVED_REASON  # the engine's own texts
from sarcoma_cds.domain.facts import FACT_FIELDS, UNKNOWN_VALUES, PatientFacts
from sarcoma_cds.domain.gist_risk import AfipCategory, NihCategory
from sarcoma_cds.domain.kb_models import Condition
from sarcoma_cds.domain.knowledge import SEVERITY, CompiledKB
from sarcoma_cds.domain.recommendation import STATUS_ORDER
from sarcoma_cds.domain.staging import StageGroup

STATUSES = STATUS_ORDER  # by severity
CONCORDANCE = ("not_assessable", "concordant", "concordant_conditional", "discordant")
# reason kinds (see explain.reason_text)
RK_NONE, RK_NOT_REC, RK_COND, RK_NOT_IN_GROUP, RK_NO_SINGLE_PATHWAY = 0, 1, 2, 3, 4
RK_OUT_OF_SCOPE, RK_CANDIDATES, RK_NO_DELIVERED, RK_INVALID = 5, 6, 7, 8

RB = 4096  # reason-id radix inside a rank
OCC = 64  # occurrence radix inside a value
VAL = OCC * RB
NO_GROUP_REASON = "No patient group of the source matches these facts."


def _literal_args(tp: Any) -> tuple[Any, ...]:
    return tuple(typing.get_args(tp))


def fact_schema() -> dict[str, tuple[str, tuple[Any, ...]]]:
    """fact -> (kind, vocabulary); kind is cat | bool | list | num | int."""
    out: dict[str, tuple[str, tuple[Any, ...]]] = {}
    for name in FACT_FIELDS:
        ann = PatientFacts.model_fields[name].annotation
        is_optional = typing.get_origin(ann) in (typing.Union, __import__("types").UnionType)
        inner = next(a for a in typing.get_args(ann) if a is not type(None)) if is_optional else ann
        origin = typing.get_origin(inner)
        if origin is typing.Literal:
            out[name] = ("cat", _literal_args(inner))
        elif origin is tuple:
            out[name] = ("list", _literal_args(typing.get_args(inner)[0]))
        else:
            base = typing.get_args(inner)[0] if typing.get_args(inner) else inner
            if base is bool:
                out[name] = ("bool", (False, True))
            elif base is int:
                out[name] = ("int", ())
            else:
                out[name] = ("num", ())
    return out


FACTS = fact_schema()
SITES: tuple[str, ...] = FACTS["primary_site"][1]
STAGE_VOCAB: tuple[str, ...] = typing.get_args(StageGroup)
AFIP_VOCAB: tuple[str, ...] = typing.get_args(AfipCategory)
NIH_VOCAB: tuple[str, ...] = typing.get_args(NihCategory)


def bit(fact: str, value: Any) -> int:
    vocab = FACTS[fact][1]
    return 1 << vocab.index(value)


def mask_of(vocab: tuple[Any, ...], values: Any) -> int:
    m = 0
    for v in values:
        if v in vocab:
            m |= 1 << vocab.index(v)
    return m


def item_key(item: str) -> str:
    """A delivered item in canonical form: drug combinations sorted, joined by '+'."""
    parts = [p.strip() for p in item.split("+")]
    return "+".join(sorted(parts)) if len(parts) > 1 else parts[0]


@dataclass
class Occurrence:
    pathway: int
    order: int  # position in the pathway's source order (step, then its options)
    addr: tuple[int, ...]
    item: str


@dataclass
class GroupInfo:
    index: int
    id: str
    occurrences: list[Occurrence]
    pathways: int


@dataclass
class KBCompilation:
    """Everything the backends and the decoder need, derived from one CompiledKB."""

    kb: CompiledKB
    plan: Plan
    groups: list[str]
    items: list[str]  # delivered-item vocabulary: treatment ids and drug combinations
    treatments: frozenset[str]
    drugs: frozenset[str]
    reasons: list[str]  # reason id -> text (0: none)
    oos_reasons: list[str]
    slots: int
    group_info: list[GroupInfo] = field(default_factory=list)


class UnsupportedCondition(ValueError):
    pass


class Translator:
    """Condition trees -> IR, with the per-patient engine's semantics for every test."""

    DERIVED: typing.ClassVar[dict[str, tuple[str, ...] | None]] = {
        "site_family": None,  # vocab filled from the KB
        "stage_group": STAGE_VOCAB,
        "gist_risk_nih": NIH_VOCAB,
        "gist_risk_afip": AFIP_VOCAB,
    }

    def __init__(self, kb: CompiledKB):
        self.kb = kb
        self.defs = dict(kb.data.definitions)
        self.family_vocab: tuple[str, ...] = tuple(sorted(set(kb.site_families.values())))

    def vocab(self, fact: str) -> tuple[Any, ...]:
        if fact == "site_family":
            return self.family_vocab
        if fact in self.DERIVED:
            return self.DERIVED[fact]  # type: ignore[return-value]
        return FACTS[fact][1]

    def kind(self, fact: str) -> str:
        if fact in self.DERIVED:
            return "set"
        return FACTS[fact][0]

    @staticmethod
    def view_col(fact: str) -> E:
        return col(f"v_{fact}")

    def tr(self, c: Condition, seen: tuple[str, ...] = ()) -> E:
        """The condition as a three-valued IR expression (``seen``: the definitions being
        expanded, to refuse a cycle)."""
        if c.ref is not None:
            if c.ref in seen or c.ref not in self.defs:
                raise UnsupportedCondition(f"bad definition reference {c.ref!r}")
            return self.tr(self.defs[c.ref], (*seen, c.ref))
        if c.all_ is not None:
            return all_of([self.tr(k, seen) for k in c.all_])
        if c.any_ is not None:
            return any_of([self.tr(k, seen) for k in c.any_])
        if c.not_ is not None:
            return ~self.tr(c.not_, seen)
        fact = c.fact
        assert fact is not None
        if c.known is not None:
            return self._known(fact, c.known)
        if c.in_ is not None or c.eq is not None:
            return self._member(fact, list(c.in_) if c.in_ is not None else [c.eq])
        if c.contains is not None:
            return self._contains(fact, c.contains)
        if c.count_ge is not None:
            return self._count_ge(fact, c.count_ge)
        return self._compare(c, fact)

    def _known(self, fact: str, known: bool) -> E:
        """``known``: a derived fact counts as known only when pinned to one value
        (``conditions.known_test``)."""
        x = self.view_col(fact)
        if self.kind(fact) == "set":
            test = is_true(x.not_null() & x.band(x.sub(1)).eq(0))
        else:
            test = x.not_null()
        return test if known else ~test

    def _member(self, fact: str, values: list[Any]) -> E:
        """``in`` / ``eq``: a bit test on the fact's mask; on a derived fact (a set of possible
        values) TRUE when all are listed, FALSE when none is, else unknown."""
        kind = self.kind(fact)
        x = self.view_col(fact)
        if kind in ("num", "int"):
            if not values:
                return FALSE
            return any_of([x.eq(float(v)) for v in values
                           if isinstance(v, int | float) and not isinstance(v, bool)])
        if kind == "list":
            raise UnsupportedCondition(f"'in'/'eq' on list fact {fact!r}")
        vocab = self.vocab(fact)
        if kind == "bool":
            values = [v for v in values if isinstance(v, bool)]
        m = mask_of(vocab, values)
        if kind == "set":  # subset -> TRUE, disjoint -> FALSE, else unknown
            full = (1 << len(vocab)) - 1
            return case([(x.band(full & ~m).eq(0), TRUE), (x.band(m).eq(0), FALSE)],
                        NULL_BOOL, "bool")
        return x.band(m).ne(0)

    def _contains(self, fact: str, item: str) -> E:
        """``contains`` on a list fact (an item outside the vocabulary is never contained)."""
        if self.kind(fact) != "list":
            raise UnsupportedCondition(f"'contains' on non-list fact {fact!r}")
        x = self.view_col(fact)
        vocab = self.vocab(fact)
        if item not in vocab:
            return case([(x.is_null(), NULL_BOOL)], FALSE, "bool")
        return x.band(1 << vocab.index(item)).ne(0)

    def _count_ge(self, fact: str, n: int) -> E:
        """``count_ge`` on a list fact: at least ``n`` of its items (bits) are set."""
        if self.kind(fact) != "list":
            raise UnsupportedCondition(f"'count_ge' on non-list fact {fact!r}")
        x = self.view_col(fact)
        count: E = lit(0)
        for i in range(len(self.vocab(fact))):
            count = count.add(case([(x.band(1 << i).ne(0), 1)], 0))
        return case([(x.is_null(), NULL_BOOL)], count.ge(int(n)), "bool")

    def _compare(self, c: Condition, fact: str) -> E:
        """``gt`` / ``ge`` / ``lt`` / ``le`` on a numeric fact."""
        kind = self.kind(fact)
        x = self.view_col(fact)
        if kind not in ("num", "int"):
            raise UnsupportedCondition(f"numeric comparison on non-numeric fact {fact!r}")
        for op in ("gt", "ge", "lt", "le"):
            v = getattr(c, op)
            if v is not None:
                cmp: E = getattr(x, op)(float(v))
                return cmp
        raise UnsupportedCondition(f"unsupported condition on {fact!r}")


def _bands_index(x: E, maxes: list[float | None]) -> E:
    """Index of the first band whose (inclusive) upper bound holds x; len(maxes) when x is NULL."""
    branches: list[tuple[E, Any]] = [(x.is_null(), len(maxes))]
    for i, m in enumerate(maxes):
        if m is None:
            branches.append((TRUE, i))
            break
        branches.append((x.le(float(m)), i))
    return case(branches, len(maxes) - 1)


def _reps(maxes: list[float | None]) -> list[float | None]:
    """A representative value in each band, then None (unknown)."""
    out: list[float | None] = []
    prev = 0.0
    for m in maxes:
        out.append(float(m) if m is not None else prev + 1.0)
        if m is not None:
            prev = float(m)
    return [*out, None]


def _cat_index(x: E, fact: str, values: tuple[Any, ...]) -> E:
    """Vocabulary position among ``values`` (NULL -> len(values))."""
    return case([(x.eq(bit(fact, v)), i) for i, v in enumerate(values)], len(values))


@dataclass(frozen=True)
class ItemVocabulary:
    """What a delivered item may name: the pathways' treatments and regimens, and their drugs."""

    items: tuple[str, ...]  # treatments and regimen keys, in pathway order
    treatments: frozenset[str]
    drugs: frozenset[str]


def item_vocabulary(kb: CompiledKB) -> ItemVocabulary:
    items: list[str] = []
    treatments: set[str] = set()
    drugs: set[str] = set()
    for g in kb.groups.values():
        for pw in g.pathways:
            for st in pw.steps:
                treatments.add(st.treatment)
                if st.treatment not in items:
                    items.append(st.treatment)
                for op in st.options:
                    drugs |= set(op.drugs)
                    k = item_key("+".join(op.drugs))
                    if k not in items:
                        items.append(k)
    return ItemVocabulary(tuple(items), frozenset(treatments), frozenset(drugs))


def compile_kb_plan(kb: CompiledKB, slots: int) -> KBCompilation:
    """The whole cohort plan for ``kb`` with ``slots`` delivered-item columns.

    Stage 1 (every row): the facts as the engine sees them, the derived facts, the patient
    group. Stage 2 (per group, on the rows of that group): personalised statuses, the
    pathway that best explains what was delivered, concordance and its reason. Each step
    below mirrors one part of the per-patient engine, in the engine's order.
    """
    tr = Translator(kb)
    bands = _Bands.of(kb)
    stage1 = [_view_layer(kb), _derived_layer(tr, bands), _table_layer(kb, bands),
              *_classification_layers(kb, tr)]
    reasons = _ReasonTable.of(kb)
    voc = item_vocabulary(kb)
    item_idx = {k: i for i, k in enumerate(voc.items)}
    groups = [gid for gid, _ in kb.group_rules]
    stage2: dict[int, list[Layer]] = {}
    infos: list[GroupInfo] = []
    for gi, gid in enumerate(groups):
        stage2[gi], occs = _group_layers(kb, tr, gid, reasons, item_idx, slots)
        infos.append(GroupInfo(gi, gid, occs, len(kb.groups[gid].pathways)))
    plan = fold_plan(Plan(stage1, stage2, _no_group_columns(slots), _output_columns(slots)))
    # (constants computed once, here)
    oos_reasons = [" ".join(s.rule.reason.split()) for s in kb.scope] + \
                  [" ".join(g.rule.reason.split()) for g in kb.gaps] + [NO_GROUP_REASON]
    return KBCompilation(kb, plan, groups, list(voc.items), frozenset(voc.treatments),
                         frozenset(voc.drugs), reasons.texts, oos_reasons, slots, infos)


# ---------------------------------------------------------------- stage 1: facts and group

def _view_layer(kb: CompiledKB) -> Layer:
    """``v_<fact>``: each fact as the engine's view of it. An "unknown" answer counts as not
    given, and the knowledge base's stated assumptions fill facts that are missing."""
    view = Layer([])
    for name in FACT_FIELDS:
        x: E = col(f"f_{name}")
        if name in UNKNOWN_VALUES:
            x = case([(x.eq(bit(name, UNKNOWN_VALUES[name])), NULL_INT)], x)
        for fname, value, _why in kb.assumptions:
            if fname == name:
                kind = FACTS[name][0]
                x = x.fill(mask_of(FACTS[name][1], [value]) if kind in ("cat", "bool") else value)
        view.columns.append((f"v_{name}", x))
    return view


@dataclass(frozen=True)
class _Bands:
    """Upper bounds of the size and mitotic-rate bands of the staging and GIST risk tables.

    The derived facts are computed by looking up the core's own calculators at one
    representative value per band, so the cohort never restates a table."""

    t: list[float | None]
    afip_size: list[float | None]
    afip_mit: list[float | None]
    nih_size: list[float | None]
    nih_mit: list[float | None]

    @classmethod
    def of(cls, kb: CompiledKB) -> _Bands:
        ajcc = kb.stager.tables
        t_maxes = [b.max_cm for b in ajcc.systems[0].t_bands]
        if any([b.max_cm for b in s.t_bands] != t_maxes for s in ajcc.systems):
            raise UnsupportedCondition("staging systems with different T bands")
        afip, nih = kb.risk.afip, kb.risk.nih
        return cls(t_maxes,
                   [b.max_cm for b in afip.size_bands], [b.max for b in afip.mitotic_bands],
                   [b.max_cm for b in nih.size_bands], [b.max for b in nih.mitotic_bands])


_NODES_VALS = FACTS["nodes"][1]
_M_VALS = FACTS["metastasis"][1]
_GRADE_VALS = FACTS["grade"][1]


def _derived_layer(tr: Translator, bands: _Bands) -> Layer:
    """``v_site_family`` and the band and category indices (``x_*``) the table keys are made of."""
    site = col("i_primary_site")
    kb = tr.kb
    fam = case([(site.eq(i), 1 << tr.family_vocab.index(kb.site_families[s]))
                for i, s in enumerate(SITES) if s in kb.site_families], None)
    rupture = col("v_tumour_rupture")
    return Layer([
        ("v_site_family", fam),
        ("x_is_gist", col("f_histology").eq(bit("histology", "gist"))),
        ("x_t", _bands_index(col("f_size_cm"), bands.t)),
        ("x_n", _cat_index(col("f_nodes"), "nodes", _NODES_VALS)),
        ("x_m", _cat_index(col("f_metastasis"), "metastasis", _M_VALS)),
        ("x_g", _cat_index(col("f_grade"), "grade", _GRADE_VALS)),
        ("x_as", _bands_index(col("f_size_cm"), bands.afip_size)),
        ("x_am", _bands_index(col("f_mitotic_rate_per_5mm2"), bands.afip_mit)),
        ("x_ns", _bands_index(col("f_size_cm"), bands.nih_size)),
        ("x_nm", _bands_index(col("f_mitotic_rate_per_5mm2"), bands.nih_mit)),
        ("x_rup", case([(rupture.eq(bit("tumour_rupture", True)), 1),
                        (rupture.eq(bit("tumour_rupture", False)), 0)], 2)),
    ])


def _stage_lookup(kb: CompiledKB, bands: _Bands) -> E:
    """The AJCC stage group (a mask of the possible groups) by site, T band, N, M and grade."""
    t_reps = _reps(bands.t)
    table: list[int | None] = []
    for s in SITES:
        for t_rep in t_reps:
            for n in (*_NODES_VALS, None):
                for m in (*_M_VALS, None):
                    for g in (*_GRADE_VALS, None):
                        res = kb.stager.stage(s, t_rep, n, m, g)
                        table.append(None if res is None else mask_of(STAGE_VOCAB, res.possible))
    nt, nn, n_m, ng = len(t_reps), len(_NODES_VALS) + 1, len(_M_VALS) + 1, len(_GRADE_VALS) + 1
    key = (col("i_primary_site").mul(nt * nn * n_m * ng).add(col("x_t").mul(nn * n_m * ng))
           .add(col("x_n").mul(n_m * ng)).add(col("x_m").mul(ng)).add(col("x_g")))
    return Lookup(key, tuple(table))


def _afip_lookup(kb: CompiledKB, bands: _Bands) -> E:
    """The AFIP (Miettinen) GIST risk category mask by site, size band and mitotic band."""
    table: list[int | None] = []
    for s in SITES:
        for sz in _reps(bands.afip_size):
            for mi in _reps(bands.afip_mit):
                table.append(mask_of(AFIP_VOCAB, kb.risk.afip_risk(s, sz, mi).possible))
    a_s, a_m = len(bands.afip_size) + 1, len(bands.afip_mit) + 1
    key = col("i_primary_site").mul(a_s * a_m).add(col("x_as").mul(a_m)).add(col("x_am"))
    return Lookup(key, tuple(table))


def _nih_lookup(kb: CompiledKB, bands: _Bands) -> E:
    """The modified NIH (Joensuu) GIST risk category mask by site, size, mitoses and rupture."""
    table: list[int | None] = []
    for s in SITES:
        for sz in _reps(bands.nih_size):
            for mi in _reps(bands.nih_mit):
                for rup in (False, True, None):
                    table.append(mask_of(NIH_VOCAB, kb.risk.nih_risk(s, sz, mi, rup).possible))
    n_s, n_m = len(bands.nih_size) + 1, len(bands.nih_mit) + 1
    key = (col("i_primary_site").mul(n_s * n_m * 3).add(col("x_ns").mul(n_m * 3))
           .add(col("x_nm").mul(3)).add(col("x_rup")))
    return Lookup(key, tuple(table))


def _table_layer(kb: CompiledKB, bands: _Bands) -> Layer:
    """``v_stage_group`` (not for GIST) and the two GIST risk facts (GIST only)."""
    gist = col("x_is_gist")
    return Layer([
        ("v_stage_group", case([(gist, NULL_INT)], _stage_lookup(kb, bands))),
        ("v_gist_risk_afip", case([(gist, _afip_lookup(kb, bands))], NULL_INT)),
        ("v_gist_risk_nih", case([(gist, _nih_lookup(kb, bands))], NULL_INT)),
    ])


def _classification_layers(kb: CompiledKB, tr: Translator) -> list[Layer]:
    """The engine's classification: scope tests, group rules and stated gaps (three-valued),
    counted; then the group (one true rule, or the only unknown one when no gap may apply),
    the candidate groups, or the out-of-scope reason."""
    tests = Layer([])
    for i, sc in enumerate(kb.scope):
        tests.columns.append((f"c_s{i}", tr.tr(sc.test.source)))
    for i, (_gid, rule_test) in enumerate(kb.group_rules):
        tests.columns.append((f"c_g{i}", tr.tr(rule_test.source)))
    for i, gp in enumerate(kb.gaps):
        tests.columns.append((f"c_p{i}", tr.tr(gp.test.source)))
    n_scope, n_gaps = len(kb.scope), len(kb.gaps)
    gcols = [col(f"c_g{i}") for i in range(len(kb.group_rules))]
    counts = Layer([
        ("k_scope", case([(col(f"c_s{i}"), i) for i in range(n_scope)], None)),
        ("k_ntrue", _sum([case([(g, 1)], 0) for g in gcols])),
        ("k_nunk", _sum([case([(g.is_null(), 1)], 0) for g in gcols])),
        ("k_tmask", _sum([case([(g, 1 << i)], 0) for i, g in enumerate(gcols)])),
        ("k_umask", _sum([case([(g.is_null(), 1 << i)], 0) for i, g in enumerate(gcols)])),
        ("k_tidx", case([(g, i) for i, g in enumerate(gcols)], None)),
        ("k_uidx", case([(g.is_null(), i) for i, g in enumerate(gcols)], None)),
        ("k_gap", case([(col(f"c_p{i}"), i) for i in range(n_gaps)], None)),
        ("k_gapunk", any_of([col(f"c_p{i}").is_null() for i in range(n_gaps)])),
    ])
    out_of_scope = ~col("k_scope").is_null()
    ntrue, nunk, gap = col("k_ntrue"), col("k_nunk"), col("k_gap")
    inferred = ntrue.eq(0) & nunk.eq(1) & ~col("k_gapunk")
    final = Layer([
        ("group_idx", case([(out_of_scope, None), (ntrue.eq(1), col("k_tidx")),
                            (inferred, col("k_uidx"))], None)),
        ("cand_mask", case([(out_of_scope, 0), (ntrue.gt(1), col("k_tmask")),
                            (ntrue.eq(1), 0), (inferred, 0), (gap.not_null(), 0),
                            (nunk.eq(0), 0)], col("k_umask"))),
        ("oos_idx", case([(out_of_scope, col("k_scope")), (ntrue.ge(1), None), (inferred, None),
                          (gap.not_null(), gap.add(n_scope)), (nunk.eq(0), n_scope + n_gaps)],
                         None)),
        # the engine reports no stage or risk for out-of-scope patients
        ("stage_mask", case([(out_of_scope, None)], col("v_stage_group"))),
        ("afip_mask", case([(out_of_scope, None)], col("v_gist_risk_afip"))),
        ("nih_mask", case([(out_of_scope, None)], col("v_gist_risk_nih"))),
    ])
    return [tests, counts, final]


# ---------------------------------------------------------------- stage 2: per group

@dataclass(frozen=True)
class _ReasonTable:
    """Reason texts by id (0: none): every rule outcome in the engine's application order,
    then the engine's text for a status derived from a step's options."""

    texts: list[str]
    outcome_id: dict[tuple[str, int], int]  # (rule id, case index or -1 for unknown) -> id
    derived_base: int  # id of the first derived-status text (in STATUSES order)

    @classmethod
    def of(cls, kb: CompiledKB) -> _ReasonTable:
        texts: list[str] = [""]
        outcome_id: dict[tuple[str, int], int] = {}
        for rule in kb.data.rules.rules:
            for ci, cs in enumerate(rule.cases):
                outcome_id[(rule.id, ci)] = len(texts)
                texts.append(" ".join((cs.reason or "").split()))
            outcome_id[(rule.id, -1)] = len(texts)
            texts.append(" ".join(((rule.unknown.reason if rule.unknown else None) or "").split()))
        derived_base = len(texts)
        for s in STATUSES:
            texts.append(DERIVED_REASON[s])
        if len(texts) >= RB:
            raise UnsupportedCondition("too many rule outcomes for the rank encoding")
        return cls(texts, outcome_id, derived_base)

    def rank(self, status: str, rule_id: str, case_index: int) -> int:
        """Severity first, then the earlier outcome (its reason is the one reported)."""
        return SEVERITY[status] * RB + (RB - 1 - self.outcome_id[(rule_id, case_index)])


Address = tuple[int, ...]  # (pathway, step) or (pathway, step, option)


def _group_layers(kb: CompiledKB, tr: Translator, gid: str, reasons: _ReasonTable,
                  item_idx: dict[str, int], slots: int) -> tuple[list[Layer], list[Occurrence]]:
    """Stage 2 of one group: the personalised status of each step and option, then how well
    each pathway explains the delivered items, and the verdict."""
    group = kb.groups[gid]
    n_paths = len(group.pathways)
    dcols = [col(f"d_{j}") for j in range(slots)]
    rule_layer, targets = _rule_layer(kb, tr, gid, reasons)
    addr_layer, cover_layer, occs = _address_layers(kb, gid, targets, reasons.derived_base)
    occ_layer, per_path_items = _occurrence_layer(n_paths, occs, item_idx)
    slot_layer = _slot_layer(n_paths, dcols, per_path_items, item_idx)
    return [rule_layer, addr_layer, cover_layer, occ_layer, slot_layer,
            *_verdict_layers(n_paths, dcols)], occs


def _rule_layer(kb: CompiledKB, tr: Translator, gid: str,
                reasons: _ReasonTable) -> tuple[Layer, dict[Address, list[E]]]:
    """``r_<i>``: the most severe outcome rank of each personalisation rule bound to the group
    (a case that holds, or the rule's unknown outcome when no case holds and one cannot
    tell), and which steps and options each rule targets."""
    layer = Layer([])
    targets: dict[Address, list[E]] = {}
    for ri, br in enumerate(kb.bound[gid]):
        gate: E = TRUE if br.only_if is None else is_true(tr.tr(br.only_if.source))
        tests = [tr.tr(cc.test.source) for cc in br.cases]
        contribs: list[E] = []
        for ci, (cc, test) in enumerate(zip(br.cases, tests, strict=True)):
            if cc.case.status is not None:
                rank = reasons.rank(cc.case.status, br.rule.id, ci)
                contribs.append(case([(gate & test, rank)], None))
        if br.unknown is not None and br.unknown.status is not None and tests:
            cond = (gate & ~any_of([is_true(test) for test in tests])
                    & any_of([test.is_null() for test in tests]))
            contribs.append(case([(cond, reasons.rank(br.unknown.status, br.rule.id, -1))], None))
        if not contribs:
            continue
        name = f"r_{ri}"
        layer.columns.append((name, greatest(contribs)))
        for addr in (*br.steps, *br.options):
            targets.setdefault(addr, []).append(col(name))
    return layer, targets


def _address_layers(kb: CompiledKB, gid: str, targets: dict[Address, list[E]],
                    derived_base: int) -> tuple[Layer, Layer, list[Occurrence]]:
    """Per step and option: ``_c`` the rank of its most severe rule, ``_s`` its status
    severity (1, an option, when no rule applies), ``_r`` the reason id. A step whose options
    cover it takes the least severe of its options unless its own rules say worse (the
    engine's status combination, ADR 0007). Also lists every occurrence of an item."""
    group = kb.groups[gid]
    addr_layer = Layer([])
    cover_layer = Layer([])
    occs: list[Occurrence] = []
    for pi, pw in enumerate(group.pathways):
        order = 0
        for si, st in enumerate(pw.steps):
            addrs = [(pi, si)] + [(pi, si, oi) for oi in range(len(st.options))]
            for a in addrs:
                code = greatest(targets.get(a, []))
                nm = _addr(a)
                addr_layer.columns.append((f"{nm}_c", code))
                if len(a) == 3 or not st.options_cover_step:
                    addr_layer.columns.append(
                        (f"{nm}_s", case([(code.is_null(), 1)], code.div(RB))))
                    addr_layer.columns.append(
                        (f"{nm}_r", case([(code.is_null(), 0)], lit(RB - 1).sub(code.mod(RB)))))
            if st.options_cover_step:
                nm = _addr((pi, si))
                own = col(f"{nm}_c")
                own_s = case([(own.is_null(), 1)], own.div(RB))
                best = least([col(f"{_addr((pi, si, oi))}_s") for oi in range(len(st.options))])
                cover_layer.columns.append((f"{nm}_s", case(
                    [(best.gt(own_s), best), (best.eq(0) & own.is_null(), 0)], own_s)))
                cover_layer.columns.append((f"{nm}_r", case(
                    [(own.not_null(), lit(RB - 1).sub(own.mod(RB))),
                     (best.ne(1), best.add(derived_base))], 0)))
            occs.append(Occurrence(pi, order, (pi, si), st.treatment))
            order += 1
            for oi, op in enumerate(st.options):
                occs.append(Occurrence(pi, order, (pi, si, oi), item_key("+".join(op.drugs))))
                order += 1
        if order >= OCC:
            raise UnsupportedCondition(f"pathway {pi + 1} of {gid} has too many steps and regimens")
    return addr_layer, cover_layer, occs


def _occurrence_layer(n_paths: int, occs: list[Occurrence],
                      item_idx: dict[str, int]) -> tuple[Layer, dict[int, list[str]]]:
    """``o_<pathway>_<item>``: the least severe occurrence of each item in each pathway (ties:
    the first in source order), as severity, order and reason packed in one integer."""
    layer = Layer([])
    per_path_items: dict[int, list[str]] = {}
    for pi in range(n_paths):
        its: list[str] = []
        for o in occs:
            if o.pathway == pi and o.item not in its:
                its.append(o.item)
        per_path_items[pi] = its
        for it in its:
            vals = [col(f"{_addr(o.addr)}_s").mul(VAL).add(o.order * RB)
                    .add(col(f"{_addr(o.addr)}_r"))
                    for o in occs if o.pathway == pi and o.item == it]
            layer.columns.append((f"o_{pi}_{item_idx[it]}", least(vals)))
    return layer, per_path_items


def _slot_layer(n_paths: int, dcols: list[E], per_path_items: dict[int, list[str]],
                item_idx: dict[str, int]) -> Layer:
    """``s_<pathway>_<slot>``: each delivered item's packed occurrence in each pathway
    (NULL: the pathway does not list it)."""
    layer = Layer([])
    for pi in range(n_paths):
        for j, d in enumerate(dcols):
            layer.columns.append((f"s_{pi}_{j}", case(
                [(d.eq(item_idx[it]), col(f"o_{pi}_{item_idx[it]}")) for it in per_path_items[pi]],
                None)))
    return layer


_P = 8  # pathway radix inside a pathway score


def _first_slot(sev: list[E], severity: int) -> E:
    """The first delivered slot with this severity (NULL: none)."""
    return case([(sev[j].eq(severity), j) for j in range(len(sev))], None)


def _verdict_layers(n_paths: int, dcols: list[E]) -> list[Layer]:
    """Score each pathway by its most severe delivered item (NULL when it lacks one), choose
    the best (ties: the first), and derive concordance, the reason kind, the slot whose
    item decides it, and each slot's severity and reason."""
    slots = len(dcols)
    paths = range(n_paths)
    score_layer = Layer([])
    for pi in paths:
        missing = any_of([d.not_null() & col(f"s_{pi}_{j}").is_null() for j, d in enumerate(dcols)])
        score_layer.columns.append((f"q_{pi}", case(
            [(missing, None)], greatest([col(f"s_{pi}_{j}").div(VAL) for j in range(slots)]))))
    for j in range(slots):
        score_layer.columns.append((f"a_{j}", least([col(f"s_{pi}_{j}") for pi in paths])))
    best_layer = Layer([("b_best", least([col(f"q_{pi}").mul(_P).add(pi) for pi in paths]))])
    best = col("b_best")
    chosen = best.mod(_P)
    score = best.div(_P)
    slot_val_layer = Layer([])
    for j in range(slots):
        slot_val_layer.columns.append((f"w_{j}", case(
            [(best.is_null(), col(f"a_{j}"))]
            + [(chosen.eq(pi), col(f"s_{pi}_{j}")) for pi in paths], None)))
    w = [col(f"w_{j}") for j in range(slots)]
    sev = [x.div(VAL) for x in w]
    first_absent = case([(dcols[j].not_null() & w[j].is_null(), j) for j in range(slots)], None)
    conc = case([(best.is_null(), 3), (score.eq(4), 3), (score.eq(3), 2)], 1)
    rkind = case([(best.is_null() & first_absent.not_null(), RK_NOT_IN_GROUP),
                  (best.is_null(), RK_NO_SINGLE_PATHWAY), (score.eq(4), RK_NOT_REC),
                  (score.eq(3), RK_COND)], RK_NONE)
    out_layer = Layer([
        ("x_fs4", _first_slot(sev, 4)), ("x_fs3", _first_slot(sev, 3)), ("x_fa", first_absent),
    ])
    rslot = case([(best.is_null() & col("x_fa").not_null(), col("x_fa")), (best.is_null(), None),
                  (score.eq(4), col("x_fs4")), (score.eq(3), col("x_fs3"))], None)
    final2 = Layer([
        ("conc", conc),
        ("rkind", rkind),
        ("pathway", case([(best.not_null(), chosen)], None)),
        ("rslot", rslot),
    ] + [(f"st_{j}", sev[j]) for j in range(slots)]
      + [(f"rs_{j}", w[j].mod(RB)) for j in range(slots)])
    rreason = case([(col("rslot").eq(j), col(f"rs_{j}")) for j in range(slots)], 0)
    final3 = Layer([("rreason", rreason)])
    return [score_layer, best_layer, slot_val_layer, out_layer, final2, final3]


def _no_group_columns(slots: int) -> list[tuple[str, E]]:
    """Stage 2 of rows without a group: not assessable, with the reason kind."""
    return [
        ("conc", lit(0)),
        ("rkind", case([(col("oos_idx").not_null(), RK_OUT_OF_SCOPE),
                        (col("cand_mask").ne(0), RK_CANDIDATES)], RK_NO_DELIVERED)),
        ("pathway", NULL_INT),
        ("rslot", NULL_INT),
    ] + [(f"st_{j}", NULL_INT) for j in range(slots)] + [
        (f"rs_{j}", NULL_INT) for j in range(slots)
    ] + [
        ("rreason", lit(0)),
    ]


def _output_columns(slots: int) -> list[str]:
    return ["row", "group_idx", "cand_mask", "oos_idx", "stage_mask", "afip_mask", "nih_mask",
            "conc", "rkind", "pathway", "rslot", "rreason",
            *[f"st_{j}" for j in range(slots)], *[f"rs_{j}" for j in range(slots)]]


def _addr(a: tuple[int, ...]) -> str:
    return "z_" + "_".join(str(x) for x in a)


def _sum(args: list[E]) -> E:
    out = args[0]
    for a in args[1:]:
        out = out.add(a)
    return out

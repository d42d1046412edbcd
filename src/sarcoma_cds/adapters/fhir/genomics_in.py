"""Genomic variant Observations (mCODE / Genomics Reporting) -> KIT, PDGFRA, BRAF, NTRK, SDH, NF1
facts.

Why a module: laboratories write the same variant many ways (p. or c. HGVS only, three- or
one-letter amino acids, gene ids with or without ``HGNC:``, in the HGNC or geneId system) and
report germline benign variants beside somatic drivers. The exon is read from the report, from
the protein codon, or from the coding position (codon = (c. position + 2) // 3) on the canonical
transcripts; intronic positions are not placed in an exon. Germline variants classed benign or
likely benign are ignored. Where the variant cannot be placed with certainty the fact is left
unset and the reason reported.
"""

from __future__ import annotations

import re
from typing import Any

from sarcoma_cds.adapters.fhir import codes as C
from sarcoma_cds.adapters.fhir import terms as T
from sarcoma_cds.adapters.fhir.mapping_core import Mapper, codings, d_, has_code, l_, s_, text_of

_PROT = re.compile(r"p\.\(?([A-Z][a-z]{2}|[A-Z])(\d+)", re.I)
_CDNA = re.compile(r"c\.(\d+)(?:_(\d+))?(?![\d+-])[A-Za-z>]")
_CDNA_INTRONIC = re.compile(r"c\.-?\d+[+-]\d+")
_EXON = re.compile(r"exon\s*(\d+)", re.I)
_D842V = re.compile(r"\b(D842V|Asp842Val)\b", re.I)
_V600E = re.compile(r"\b(V600E|Val600Glu)\b", re.I)
# Coding-DNA changes that are these protein changes on the canonical transcripts
# (BRAF NM_004333 codon 600 GTG -> GAG; PDGFRA NM_006206 codon 842 GAC -> GTC).
_C_V600E = re.compile(r"c\.1799T>A\b|c\.1799_1800(?:delinsAA|TG>AA)\b", re.I)
_C_D842V = re.compile(r"c\.2525A>T\b", re.I)

# Genomics Reporting components.
SOURCE_CLASS = (C.LOINC, "48002-0")
GERMLINE = "LA6683-2"
SIGNIFICANCE = (C.LOINC, "53037-8")
BENIGN = {"LA6675-8", "LA26332-9"}  # Benign, Likely benign


def _exon(gene: str, text: str) -> str | None:
    m = _EXON.search(text)
    if m:
        return f"exon_{int(m.group(1))}"
    codon = None
    p = _PROT.search(text)
    if p:
        codon = int(p.group(2))
    elif not _CDNA_INTRONIC.search(text):
        c = _CDNA.search(text)
        if c:
            codon = (int(c.group(1)) + 2) // 3
    if codon is None:
        return None
    table = C.KIT_EXON_CODONS if gene == "KIT" else C.PDGFRA_EXON_CODONS
    for exon, (lo, hi) in table.items():
        if lo <= codon <= hi:
            return exon
    return "outside"


def _genes(m: Mapper, ref: str, cc: Any) -> list[str]:
    out = []
    for sys_, c, display in codings(cc):
        if sys_ != T.HGNC:
            m.gap(ref, "component[gene-studied]", f"gene code system {sys_!r} is not HGNC")
            continue
        gene = T.hgnc_gene(c) or (
            c.strip().upper() if c.strip().upper() in T.gene_symbols() else None
        )
        if gene is None:
            m.gap(
                ref,
                "component[gene-studied]",
                f"{c} ({display or 'no display'}): gene not used by the guideline",
            )
            continue
        if display and display.strip().upper() != gene:
            m.gap(
                ref,
                "component[gene-studied]",
                f"data_conflict: {c} is {gene} but its display says {display!r}; gene not used",
            )
            continue
        out.append(gene)
    if not codings(cc):
        txt = s_(d_(cc).get("text")).strip().upper()
        if txt in T.gene_symbols():
            out.append(txt)
    return out


def read_variant(m: Mapper, res: dict[str, Any], ref: str, when: str) -> None:
    answer = None
    for sys_, c, _ in codings(res.get("valueCodeableConcept")):
        if sys_ == C.LOINC and c in (C.PRESENT, C.ABSENT):
            answer = c
    if answer is None:
        m.gap(
            ref,
            "valueCodeableConcept",
            "variant assessment is neither Present (LA9633-4) nor Absent (LA9634-2)",
        )
        return
    genes: list[str] = []
    texts: list[str] = []
    germline = benign = False
    for comp in l_(res.get("component")):
        comp = d_(comp)
        cc = comp.get("valueCodeableConcept")
        if has_code(comp.get("code"), {C.GENE_STUDIED}):
            genes += _genes(m, ref, cc)
        elif has_code(comp.get("code"), {SOURCE_CLASS}):
            germline = (
                any(c == GERMLINE for _, c, _ in codings(cc)) or "germline" in text_of(cc).lower()
            )
        elif has_code(comp.get("code"), {SIGNIFICANCE}):
            benign = any(c in BENIGN for _, c, _ in codings(cc)) or "benign" in text_of(cc).lower()
        elif has_code(comp.get("code"), C.VARIANT_TEXT_COMPONENTS):
            texts += [f"{c} {display}" for _, c, display in codings(cc)]
            texts += [s_(comp.get("valueString")), s_(d_(cc).get("text"))]
    if germline and benign:
        m.gap(
            ref,
            "component[clinical-significance]",
            "germline variant classed benign or likely benign; ignored",
        )
        return
    if not genes:
        if not m.has_gap(ref):
            m.gap(ref, "component[gene-studied]", "no gene studied")
        return
    text = " ".join(t for t in texts if t)
    present = answer == C.PRESENT
    fusion = len(genes) > 1 or "fusion" in text.lower()
    for gene in dict.fromkeys(genes):
        _gene_fact(m, ref, gene, present, text, fusion, when)


def _gene_fact(
    m: Mapper, ref: str, gene: str, present: bool, text: str, fusion: bool, when: str
) -> None:
    def put(fact: str, value: Any, element: str) -> None:
        m.put(fact, value, ref, element, when=when)

    if gene == "KIT":
        ex = _exon("KIT", text) if present else None
        if not present:
            put("kit_mutation", "none", "component[gene-studied]=KIT, Absent")
        elif ex in ("exon_9", "exon_11", "exon_13", "exon_17"):
            put("kit_mutation", ex, "component[variant]")
        elif ex:
            put("kit_mutation", "other", "component[variant]")
        else:
            m.gap(
                ref,
                "component[variant]",
                "KIT variant present but its exon cannot be read; kit_mutation left unset",
            )
    elif gene == "PDGFRA":
        if not present:
            put("pdgfra_mutation", "none", "component[gene-studied]=PDGFRA, Absent")
        elif _D842V.search(text) or _C_D842V.search(text):
            put("pdgfra_mutation", "d842v", "component[variant]")
        else:
            ex = _exon("PDGFRA", text)
            if ex in ("exon_12", "exon_14"):
                put("pdgfra_mutation", ex, "component[variant]")
            elif ex == "exon_18":
                m.gap(
                    ref,
                    "component[variant]",
                    "PDGFRA exon 18 variant other than D842V: whether it is "
                    "imatinib-sensitive must be stated by the laboratory; pdgfra_mutation left "
                    "unset",
                )
            elif ex:
                put("pdgfra_mutation", "other", "component[variant]")
            else:
                m.gap(
                    ref,
                    "component[variant]",
                    "PDGFRA variant present but its exon cannot be read; pdgfra_mutation left "
                    "unset",
                )
    elif gene == "BRAF":
        if not present:
            put("braf_v600e", False, "component[gene-studied]=BRAF, Absent")
        elif _V600E.search(text) or _C_V600E.search(text):
            put("braf_v600e", True, "component[variant]")
        elif _PROT.search(text):
            put("braf_v600e", False, "component[variant] (BRAF protein change other than V600E)")
        else:
            m.gap(
                ref,
                "component[variant]",
                "BRAF variant present but its protein change is not given; braf_v600e left unset",
            )
    elif gene in C.NTRK_GENES:
        if present and fusion:
            put("ntrk_fusion", True, f"component[gene-studied]={gene} (fusion)")
        elif present:
            m.gap(
                ref,
                "component[variant]",
                f"{gene} variant present but not described as a fusion; ntrk_fusion left unset",
            )
        else:
            m.res.reported.setdefault("ntrk_absent", set()).add(gene)
            put("_ntrk_absent", True, f"component[gene-studied]={gene}, Absent")
    elif gene in C.SDH_GENES:
        if present:
            put("sdh_deficient", True, f"component[gene-studied]={gene}")
        else:
            m.gap(
                ref,
                "component[gene-studied]",
                f"{gene} variant absent: SDH deficiency is shown by SDHB "
                "immunohistochemistry and is not ruled out by absent SDHx variants; sdh_deficient "
                "left unset",
            )
    elif gene == "NF1":
        put("nf1_mutation", present, "component[gene-studied]=NF1")
    else:
        m.gap(ref, "component[gene-studied]", f"{gene}: gene not used by the guideline")

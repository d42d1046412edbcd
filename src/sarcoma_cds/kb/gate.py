"""The release gate behind ``validate-kb DIR``: everything a knowledge base must pass before
release.

Loading (``load_kb``) already checks every file and cross-reference; that runs on every start, so
it must stay fast. The gate adds what is too slow or too broad for every start: the
classification proof (:mod:`sarcoma_cds.kb.proof`, about a second), whether the cohort audit
can compile the rules, the governance data a release needs (:mod:`sarcoma_cds.kb.governance`) and
the golden cases kept next to the knowledge base (:mod:`sarcoma_cds.kb.cases`). It never stops at
the first failure of one kind, but it does not run the
proof on a knowledge base that failed to load: its findings would be follow-on errors.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from sarcoma_cds.domain.knowledge import CompiledKB, KnowledgeBaseError
from sarcoma_cds.kb.cases import run_cases
from sarcoma_cds.kb.governance import release_problems
from sarcoma_cds.kb.loader import DEFAULT_KB_DIR, load_kb
from sarcoma_cds.kb.proof import ProofResult, prove


@dataclass
class GateReport:
    """The outcome of :func:`release_gate`: ``problems`` empty means releasable."""

    kb: CompiledKB | None = None
    problems: list[str] = field(default_factory=list)
    proof: ProofResult | None = None
    proof_seconds: float = 0.0
    #: "compatible", or why the cohort audit was not checked (its extra not installed)
    cohort: str = "not checked"
    #: not blocking, but a reviewer should see them (draft status, review date passed)
    notices: list[str] = field(default_factory=list)
    #: golden cases run (``<kb>/cases/*.yaml``)
    cases: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def cohort_problems(kb: CompiledKB) -> tuple[str, list[str]]:
    """Whether the cohort audit's compiler accepts every rule (it evaluates the same rules
    vectorised, with a narrower set of condition forms)."""
    try:
        from sarcoma_cds.cohort import compiler
    except ImportError as e:  # the 'cohort' extra is not installed
        return f"not checked (needs the 'cohort' extra: {e.name})", []
    try:
        compiler.compile_kb_plan(kb, 4)
    except compiler.UnsupportedCondition as e:
        return "incompatible", [f"cohort audit: the rules cannot be evaluated on a cohort: {e}"]
    return "compatible", []


def version_problems(kb: CompiledKB, archive: Path | str | None = None) -> list[str]:
    """One version names one content (ADR 0303): a changed knowledge base must bump its version
    before it is released, checked against the packaged version and the archive."""
    from sarcoma_cds.kb.archive import available_versions
    from sarcoma_cds.kb.loader import content_hash

    other = available_versions(archive).get(kb.version)
    if other is None or content_hash(other) == kb.content_hash:
        return []
    where = "the packaged knowledge base" if other == DEFAULT_KB_DIR else f"the archive ({other})"
    return [f"guideline.yaml: version: {kb.version} already names other content in {where}; "
            "bump the version (and add its changelog entry)"]


def release_gate(root: Path | str | None = None, proof: bool = True,
                 archive: Path | str | None = None) -> GateReport:
    """Load, compile, prove and check cohort compatibility; every problem listed."""
    report = GateReport()
    try:
        report.kb = load_kb(root)
    except KnowledgeBaseError as e:
        report.problems = list(e.problems)
        return report
    problems, report.notices = release_problems(report.kb)
    report.problems.extend(problems)
    report.problems.extend(version_problems(report.kb, archive))
    if proof:
        t = time.perf_counter()
        report.proof = prove(report.kb)
        report.proof_seconds = time.perf_counter() - t
        report.problems.extend(report.proof.problems)
    report.cohort, problems = cohort_problems(report.kb)
    report.problems.extend(problems)
    report.cases, problems = run_cases(
        report.kb, Path(root) if root is not None else DEFAULT_KB_DIR
    )
    report.problems.extend(problems)
    return report

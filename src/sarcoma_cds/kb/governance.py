"""Governance of knowledge-base releases: what the release gate requires of ``guideline.yaml``, and
the hash-chained ledger of approvals kept in the archive.

The governance fields of ``guideline.yaml`` default (so versions archived before they existed
still load); the gate requires a changelog entry for the version, a review date and the
bibliography. Approvals are recorded in ``<archive>/approvals.jsonl``: one JSON object a line,
each carrying the SHA-256 of the previous line's record, so editing or deleting a past approval
breaks the chain and :func:`verify_ledger` says where. This is tamper-evident, not a
cryptographic signature by the approver: whoever can write the archive can append, but not
rewrite history unnoticed (ADR 0309).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sarcoma_cds.domain.knowledge import CompiledKB
from sarcoma_cds.kb.loader import content_hash

LEDGER = "approvals.jsonl"
GENESIS = "sha256:" + "0" * 64


def release_problems(kb: CompiledKB) -> tuple[list[str], list[str]]:
    """(problems that block a release, notices to show) for the governance data of ``kb``."""
    meta = kb.data.meta
    problems: list[str] = []
    notices: list[str] = []
    if meta.version not in {c.version for c in meta.changelog}:
        problems.append(f"guideline.yaml: changelog: no entry for version {meta.version} "
                        "(say what changed for clinicians)")
    if meta.review_by is None:
        problems.append(
            "guideline.yaml: review_by: missing (the date the content is due for review)"
        )
    elif meta.review_by < date.today().isoformat():
        notices.append(
            f"guideline.yaml: review_by {meta.review_by} has passed: the content is due for review"
        )
    if kb.data.bibliography is None:
        problems.append(
            "bibliography.yaml: missing: every source reference number cited must be listed"
        )
    if meta.status != "approved":
        notices.append(f"guideline.yaml: status is {meta.status!r}: not approved for clinical use")
    return problems, notices


def _digest(record: dict[str, Any]) -> str:
    body = json.dumps(
        {k: v for k, v in record.items() if k != "hash"}, sort_keys=True, separators=(",", ":")
    )
    return "sha256:" + hashlib.sha256(body.encode()).hexdigest()


def read_ledger(archive: Path) -> list[dict[str, Any]]:
    path = archive / LEDGER
    if not path.exists():
        return []
    return [
        json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]


def record_approval(archive: Path, kb: CompiledKB, approver: str, role: str,
                    now: datetime | None = None) -> dict[str, Any]:
    """Append who approved which version and content hash to the ledger, chained to the last record.

    Only an approved knowledge base that lists the approver (``guideline.yaml`` ``approvals``) can
    be recorded: the ledger attests the data, it does not replace it.
    """
    meta = kb.data.meta
    if meta.status != "approved":
        raise ValueError(
            f"knowledge base {meta.version} has status {meta.status!r}; set status: approved "
            "and list the approvals in guideline.yaml first"
        )
    if approver not in {a.name for a in meta.approvals}:
        raise ValueError(f"{approver!r} is not among the approvals of guideline.yaml "
                         f"({', '.join(a.name for a in meta.approvals)})")
    problems = verify_ledger(archive)
    if problems:
        raise ValueError("the approval ledger is broken, nothing recorded: " + "; ".join(problems))
    records = read_ledger(archive)
    record: dict[str, Any] = {
        "version": meta.version,
        "content_hash": kb.content_hash,
        "approver": approver,
        "role": role,
        "recorded_at": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
        "prev": records[-1]["hash"] if records else GENESIS,
    }
    record["hash"] = _digest(record)
    archive.mkdir(parents=True, exist_ok=True)
    with (archive / LEDGER).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")
    return record


def verify_ledger(archive: Path) -> list[str]:
    """Every record's hash, its link to the previous one, and (for versions in the archive) that the
    archived content still has the hash that was approved."""
    problems: list[str] = []
    prev = GENESIS
    for n, rec in enumerate(read_ledger(archive), start=1):
        where = f"{LEDGER} line {n} ({rec.get('version')}, {rec.get('approver')})"
        if rec.get("prev") != prev:
            problems.append(
                f"{where}: does not follow the previous record (a record was removed or reordered)"
            )
        if rec.get("hash") != _digest(rec):
            problems.append(f"{where}: its content does not match its hash (the record was edited)")
        copy = archive / str(rec.get("version"))
        if copy.is_dir() and content_hash(copy) != rec.get("content_hash"):
            problems.append(
                f"{where}: the archived copy {copy} no longer has the approved content hash"
            )
        prev = str(rec.get("hash"))
    return problems

"""Core CLI commands: ``recommend``, ``groups``, ``validate-kb``.

Input errors go to stderr as ``error: <field>: <message>`` with exit status 2
(the contract); nothing is printed on stdout for a patient that failed.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

import typer

from sarcoma_cds import InvalidFacts, KnowledgeBaseError, load_kb
from sarcoma_cds.domain.engine import recommend as engine_recommend
from sarcoma_cds.domain.knowledge import CompiledKB
from sarcoma_cds.domain.recommendation import Recommendation
from sarcoma_cds.interfaces import json_input
from sarcoma_cds.interfaces.shapes import groups_document


class Format(StrEnum):
    json = "json"
    text = "text"


def _fail(lines: list[str], code: int = 2) -> typer.Exit:
    for line in lines:
        sys.stderr.write(line + "\n")
    return typer.Exit(code)


def _kb(kb_dir: Path | None) -> CompiledKB:
    try:
        return load_kb(kb_dir)
    except KnowledgeBaseError as e:
        raise _fail([f"error: knowledge base: {p}" for p in e.problems]) from None


def _problems(e: InvalidFacts) -> list[str]:
    return [f"error: {f}: {m}" for f, m in e.problems]


_PATHWAYS_ADAPTER: Any = None
_PATHWAYS_JSON: dict[int, tuple[object, str]] = {}


def _to_json(rec: Recommendation) -> str:
    """The contract JSON of a recommendation, fast for streams.

    The engine shares pathway objects between patients with the same rule outcomes, so their
    JSON is rendered once per object (kept alive by the cache, so ids are never reused).
    """
    global _PATHWAYS_ADAPTER
    if _PATHWAYS_ADAPTER is None:
        from pydantic import TypeAdapter

        from sarcoma_cds.domain.recommendation import PathwayOut

        _PATHWAYS_ADAPTER = TypeAdapter(tuple[PathwayOut, ...])
    p = rec.pathways
    hit = _PATHWAYS_JSON.get(id(p))
    if hit is None or hit[0] is not p:
        hit = (p, _PATHWAYS_ADAPTER.dump_json(p).decode())
        if len(_PATHWAYS_JSON) < 50_000:
            _PATHWAYS_JSON[id(p)] = hit
    rest = rec.model_dump_json(exclude={"pathways"})
    head, sep, tail = rest.partition(',"missing_information":')
    return f'{head},"pathways":{hit[1]}{sep}{tail}'


def _json_error(line_no: int, problems: list[tuple[str, str]]) -> str:
    return json.dumps({"error": {"line": line_no, "problems": [
        {"field": f, "message": m} for f, m in problems]}})


def recommend_cmd(
    file: str = typer.Argument(
        ...,
        help="Patient facts: a .json file, a .jsonl stream (one patient a line), or '-' for stdin.",
    ),
    format: Format = typer.Option(
        Format.text, "--format", "-f", help="json (machine) or text (people)."
    ),
    kb_dir: Path | None = typer.Option(None, "--kb", help="Use another knowledge-base directory."),
) -> None:
    """Recommend treatment pathways for one patient (or a .jsonl stream of patients)."""
    kb = _kb(kb_dir)
    if file == "-":
        text = _text(sys.stdin.buffer.read(), "<stdin>")
        stream = _looks_like_jsonl(text)
        _run(kb, text, stream, format, sys.stdout)
        return
    path = Path(file)
    if not path.is_file():
        raise _fail([f"error: {file}: file not found"])
    text = _text(path.read_bytes(), file)
    _run(kb, text, path.suffix.lower() == ".jsonl", format, sys.stdout)


def _text(raw: bytes, name: str) -> str:
    """The input as text: UTF-8, with or without a byte-order mark; other bytes exit 2 naming
    the file and the offset of the first bad byte."""
    try:
        return json_input.decode(raw)
    except json_input.NotUtf8Error as e:
        raise _fail([f"error: {name}: {e}"]) from None


def _parse(text: str) -> Any:
    """One JSON value; a repeated key is an input problem naming the key (``InvalidFacts``)."""
    try:
        return json_input.loads(text)
    except json_input.DuplicateKeyError as e:
        raise InvalidFacts([(e.key, e.message)]) from None


def _looks_like_jsonl(text: str) -> bool:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) < 2:
        return False
    try:
        json.loads(lines[0])
        return True
    except ValueError:
        return False


def _run(kb: CompiledKB, text: str, stream: bool, fmt: Format, out: TextIO) -> None:
    if not stream:
        try:
            data: Any = _parse(text)
        except InvalidFacts as e:
            raise _fail(_problems(e)) from None
        except json.JSONDecodeError as e:
            raise _fail(
                [f"error: input: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})"]
            ) from None
        try:
            rec = engine_recommend(kb, data)
        except InvalidFacts as e:
            raise _fail(_problems(e)) from None
        if fmt is Format.json:
            out.write(_to_json(rec) + "\n")
        else:
            from sarcoma_cds.interfaces.cli.render_text import render

            render(rec, kb, out)
        return
    failed = False
    write = out.write
    # one answer per input line, blank lines included, so that output line n answers input line n
    for n, line in enumerate(text.splitlines(), start=1):
        try:
            if not line.strip():
                raise InvalidFacts(
                    [("input", "blank line; expected one patient (a JSON object) per line")]
                )
            data = _parse(line)
            rec = engine_recommend(kb, data)
        except ValueError as e:
            failed = True
            problems = e.problems if isinstance(e, InvalidFacts) else [("input", "not valid JSON")]
            for f, m in problems:
                sys.stderr.write(f"error: line {n}: {f}: {m}\n")
            if fmt is Format.json:
                write(_json_error(n, problems) + "\n")
            continue
        if fmt is Format.json:
            write(_to_json(rec) + "\n")
        else:
            from sarcoma_cds.interfaces.cli.render_text import render

            render(rec, kb, out)
            write("\n")
    if failed:
        raise typer.Exit(2)


def groups_cmd(
    group_id: str | None = typer.Argument(
        None, help="Show one group with its pathways (omit to list all)."
    ),
    kb_dir: Path | None = typer.Option(None, "--kb", help="Use another knowledge-base directory."),
    format: Format = typer.Option(Format.text, "--format", "-f"),
) -> None:
    """Browse the algorithm: list the patient groups, or show one with its pathways."""
    kb = _kb(kb_dir)
    from sarcoma_cds.interfaces.cli.render_text import render_group, render_group_list

    if group_id is None:
        if format is Format.json:
            # the shape of REST GET /groups
            sys.stdout.write(json.dumps(groups_document(kb)) + "\n")
        else:
            render_group_list(kb, sys.stdout)
        return
    group = kb.groups.get(group_id)
    if group is None:
        close = [g for g in kb.groups if group_id.lower() in g]
        hint = (
            f" (did you mean {', '.join(close)}?)"
            if close
            else " (run 'sarcoma-cds groups' for the list)"
        )
        raise _fail([f"error: group: unknown group {group_id!r}{hint}"])
    if format is Format.json:
        sys.stdout.write(group.model_dump_json() + "\n")
    else:
        render_group(kb, group, sys.stdout)


def validate_kb_cmd(
    kb_dir: Path | None = typer.Argument(
        None, help="Knowledge-base directory (default: the packaged one)."
    ),
    no_proof: bool = typer.Option(
        False, "--no-proof", metavar="", help="Skip the classification proof (about a second)."
    ),
) -> None:
    """The release gate: every file and cross-reference, the classification proof (no overlap, no
    gap, every group reachable) and cohort compatibility; prints version and hash, or every
    problem."""
    from sarcoma_cds.kb.gate import release_gate

    if kb_dir is not None and not kb_dir.is_dir():
        raise _fail([f"error: {kb_dir}: knowledge-base directory not found"])
    report = release_gate(kb_dir, proof=not no_proof)
    if not report.ok or report.kb is None:
        raise _fail(
            [f"error: {p}" for p in report.problems]
            + [f"error: {len(report.problems)} problem(s); the knowledge base is not releasable"]
        )
    kb = report.kb
    steps = sum(len(p.steps) for g in kb.data.groups for p in g.pathways)
    pathways = sum(len(g.pathways) for g in kb.data.groups)
    rules = len(kb.data.rules.rules)
    sys.stdout.write(
        f"ok: {kb.data.meta.id} {kb.version} {kb.content_hash}\n"
        f"    {len(kb.groups)} groups, {pathways} pathways, {steps} steps, {rules} "
        "personalisation rules, "
        f"{len(kb.data.files)} files\n"
    )
    if report.proof is not None:
        sys.stdout.write(
            f"    classification proof: {report.proof.combinations:,} complete combinations, each "
            "in exactly one "
            f"group, gap or out-of-scope rule; all {len(report.proof.reached)} groups reachable "
            f"({report.proof_seconds:.1f} s)\n"
        )
    sys.stdout.write(f"    cohort audit: {report.cohort}\n")
    sys.stdout.write(f"    golden cases and group pathways (cases/): {report.cases} pass\n")
    meta = kb.data.meta
    refs = len(kb.data.bibliography.references) if kb.data.bibliography else 0
    sys.stdout.write(
        f"    status {meta.status}, released {meta.released}, review by {meta.review_by}, "
        f"{len(meta.approvals)} approval(s), {refs} source references in the bibliography\n"
    )
    for note in report.notices:
        sys.stdout.write(f"note: {note}\n")


def register(app: typer.Typer) -> None:
    app.command("recommend")(recommend_cmd)
    app.command("groups")(groups_cmd)
    app.command("validate-kb")(validate_kb_cmd)

"""Read the knowledge-base files, validate every one, report every error, hash the content.

This is the only module that reads the knowledge base from disk; the domain gets
validated models and compiles them. A broken file fails here, naming the file
and the field, with all problems listed at once.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from sarcoma_cds.domain.gist_risk import GistRiskTables
from sarcoma_cds.domain.kb_checks import did_you_mean
from sarcoma_cds.domain.kb_models import (
    Bibliography,
    Classification,
    Condition,
    FactLabel,
    Group,
    GuidelineMeta,
    NamedSource,
    Rules,
)
from sarcoma_cds.domain.knowledge import (
    CompiledKB,
    KnowledgeBaseData,
    KnowledgeBaseError,
    compile_kb,
)
from sarcoma_cds.domain.staging import AjccTables

DEFAULT_KB_DIR = Path(__file__).parent / "data"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
M = TypeVar("M", bound=BaseModel)

_DEFS = TypeAdapter(dict[str, Condition])
_LABELS = TypeAdapter(dict[str, FactLabel])
_SOURCES = TypeAdapter(dict[str, NamedSource])


def _read(path: Path, problems: list[str], root: Path) -> Any:
    rel = path.relative_to(root).as_posix()
    try:
        with path.open("rb") as fh:
            return yaml.load(fh, Loader=_LOADER)  # a safe loader (C or Python)
    except FileNotFoundError:
        problems.append(f"{rel}: file is missing")
    except yaml.YAMLError as e:
        problems.append(f"{rel}: not valid YAML: {e}".replace("\n", " "))
    return None


#: how an item of a list is named in messages: an author finds "rule ntrk_fusion_sts" in the
#: file, not "rules.12" (list -> singular word, keys that can name an item)
_ITEM_WORDS = {"rules": "rule", "groups": "group", "out_of_scope": "out_of_scope", "gaps": "gap",
               "pathways": "pathway", "steps": "step", "options": "option", "cases": "case",
               "asks": "ask", "assumptions": "assumption", "changelog": "changelog entry",
               "approvals": "approval"}
_NAMING_KEYS = ("id", "group", "title", "field", "version")


def _where(raw: Any, loc: tuple[Any, ...]) -> str:
    """A validation error's location, list items named by their id (or title) where they have one,
    else counted from 1: ``rule ntrk_fusion_sts: cases: case 2: status``."""
    parts: list[str] = []
    node = raw
    for key in loc:
        if isinstance(key, int) and isinstance(node, list) and key < len(node):
            item = node[key]
            word = _ITEM_WORDS.get(parts[-1], "item") if parts else "item"
            name = next(
                (
                    item[k]
                    for k in _NAMING_KEYS
                    if isinstance(item, dict) and isinstance(item.get(k), str)
                ),
                None,
            )
            if parts and parts[-1] in _ITEM_WORDS:
                parts.pop()
            parts.append(f"{word} {name}" if name is not None else f"{word} {key + 1}")
        else:
            item = node.get(key) if isinstance(node, dict) else None
            parts.append(str(key))
        node = item
    return ": ".join(parts) or "(top level)"


def _got(err: Any) -> str:
    """The wrong value, and for a choice among names the nearest one ("did you mean")."""
    value = err.get("input")
    if not isinstance(value, str | int | float) or err["type"] == "missing":
        return ""
    hint = did_you_mean(
        value, re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", "")))
    )
    return f" (got {value!r}){hint}"


def _validate(adapter: Any, raw: Any, rel: str, problems: list[str]) -> Any:
    try:
        if isinstance(adapter, type) and issubclass(adapter, BaseModel):
            return adapter.model_validate(raw)
        return adapter.validate_python(raw)
    except ValidationError as e:
        for err in e.errors(include_url=False):
            problems.append(f"{rel}: {_where(raw, tuple(err['loc']))}: {err['msg']}{_got(err)}")
    return None


def content_hash(root: Path) -> str:
    """sha256 over every data file's relative path and bytes, in sorted order."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.yaml")):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(b"\0")
        h.update(p.read_bytes())
        h.update(b"\0")
    return "sha256:" + h.hexdigest()


def load_data(root: Path | str = DEFAULT_KB_DIR) -> KnowledgeBaseData:
    """Load and validate every file under ``root``; raise :class:`KnowledgeBaseError` listing all
    problems."""
    root = Path(root)
    problems: list[str] = []
    if not root.is_dir():
        raise KnowledgeBaseError([f"{root}: knowledge-base directory not found"])

    def one(name: str, adapter: Any) -> Any:
        raw = _read(root / name, problems, root)
        return None if raw is None else _validate(adapter, raw, name, problems)

    meta = one("guideline.yaml", GuidelineMeta)
    labels = one("facts.yaml", _LABELS)
    defs = one("rules/definitions.yaml", _DEFS)
    classification = one("rules/classification.yaml", Classification)
    rules = one("rules/personalisation.yaml", Rules)
    ajcc = one("tables/ajcc8.yaml", AjccTables)
    risk = one("tables/gist_risk.yaml", GistRiskTables)
    sources = one("sources.yaml", _SOURCES) if (root / "sources.yaml").exists() else {}
    bibliography = (
        one("bibliography.yaml", Bibliography) if (root / "bibliography.yaml").exists() else None
    )

    groups: list[Group] = []
    group_files = sorted((root / "groups").glob("*.yaml"))
    if not group_files:
        problems.append("groups/: no group files")
    for p in group_files:
        rel = p.relative_to(root).as_posix()
        raw = _read(p, problems, root)
        g = _validate(Group, raw, rel, problems) if raw is not None else None
        if g is not None:
            if not p.stem.endswith(g.id):
                problems.append(f"{rel}: id: file name must end with the group id {g.id!r}")
            groups.append(g)
    ids = [g.id for g in groups]
    for gid in {i for i in ids if ids.count(i) > 1}:
        problems.append(f"groups/: group id {gid!r} is defined twice")
    orders = sorted(g.order for g in groups)
    if len(groups) == len(group_files) and orders != list(
        range(1, len(groups) + 1)
    ):  # (no follow-on)
        problems.append(f"groups/: order must run 1..{len(groups)} without gaps; found {orders}")
    if problems:
        raise KnowledgeBaseError(problems)
    return KnowledgeBaseData(
        meta=meta,
        groups=tuple(sorted(groups, key=lambda g: g.order)),
        definitions=defs,
        classification=classification,
        rules=rules,
        ajcc=ajcc,
        gist_risk=risk,
        fact_labels=labels,
        content_hash=content_hash(root),
        files=tuple(p.relative_to(root).as_posix() for p in sorted(root.rglob("*.yaml"))),
        sources=sources or {},
        bibliography=bibliography,
    )


def load_kb(root: Path | str | None = None) -> CompiledKB:
    """Load, validate and compile a knowledge base (the packaged one by default, cached)."""
    if root is None:
        return _default_kb()
    return compile_kb(load_data(root))


@lru_cache(maxsize=1)
def _default_kb() -> CompiledKB:
    return compile_kb(load_data(DEFAULT_KB_DIR))

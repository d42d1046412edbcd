"""Knowledge-base references and the archive of released versions (ADR 0303).

Guideline-change impact compares a cohort under two knowledge-base versions, but an installed
package carries only its own version and no git history. So released versions are copied into
an archive (``<archive>/<version>/``) and a command can name an old knowledge base by version.
One version must name exactly one content: archiving the same version with another content
hash is refused.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from sarcoma_cds.domain.knowledge import CompiledKB
from sarcoma_cds.kb.loader import DEFAULT_KB_DIR, content_hash, load_kb

ARCHIVE_ENV = "SARCOMA_CDS_KB_ARCHIVE"
DEFAULT_ARCHIVE = Path("data") / "kb-archive"
# A version is also a directory name in the archive: no separators, no leading dot.
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]*")


class KbArchiveError(ValueError):
    """A knowledge-base reference or archive operation that cannot be honoured (exit 2 at the
    CLI)."""


class KbReferenceError(KbArchiveError):
    """A reference that is neither a directory nor a known version; the message lists the
    versions."""


class VersionConflict(KbArchiveError):
    """The version is already archived with other content: one version must name one content."""


@dataclass(frozen=True, slots=True)
class Archived:
    """Outcome of :func:`archive_kb`; ``created`` is False when the same content was already
    there."""

    version: str
    path: Path
    content_hash: str
    created: bool


def archive_dir(archive: Path | str | None = None) -> Path:
    """The archive directory: the argument, else ``$SARCOMA_CDS_KB_ARCHIVE``, else
    ``./data/kb-archive``."""
    if archive is not None:
        return Path(archive)
    env = os.environ.get("SARCOMA_CDS_KB_ARCHIVE", "").strip()
    return Path(env) if env else DEFAULT_ARCHIVE


def _sort_key(version: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[.+_-]", version))


def available_versions(archive: Path | str | None = None) -> dict[str, Path]:
    """Every version a reference can name, packaged first (it wins over an archived copy), then
    archived."""
    found = {load_kb().version: DEFAULT_KB_DIR}
    root = archive_dir(archive)
    if root.is_dir():
        names = [p.name for p in root.iterdir()
                 if p.is_dir() and _VERSION.fullmatch(p.name) and (p / "guideline.yaml").is_file()]
        for name in sorted(names, key=_sort_key):
            found.setdefault(name, root / name)
    return found


def _normalise(ref: str) -> str:
    ref = ref.strip()
    return ref[1:] if len(ref) > 1 and ref[0] in "vV" and ref[1].isdigit() else ref


def _listing(archive: Path | str | None) -> str:
    root = archive_dir(archive)
    where = [f"{v} ({'packaged' if p == DEFAULT_KB_DIR else 'archived'})"
             for v, p in available_versions(archive).items()]
    place = f"archive: {root}" if root.is_dir() else f"no archive at {root}"
    return f"versions available: {', '.join(where)} ({place})"


def resolve_kb(ref: str, archive: Path | str | None = None) -> Path:
    """The knowledge-base directory a reference names.

    In order: an existing directory; the packaged version (``1.0.0`` or ``v1.0.0``);
    ``<archive>/<version>/``. Anything else raises :class:`KbReferenceError`.
    """
    if Path(ref).is_dir():
        return Path(ref)
    version = _normalise(ref)
    if _VERSION.fullmatch(version):
        hit = available_versions(archive).get(version)
        if hit is not None:
            return hit
    raise KbReferenceError(
        f"knowledge base {ref!r} is neither a directory nor a known version; {_listing(archive)}")


def load_ref(ref: str | None, archive: Path | str | None = None) -> CompiledKB:
    """Load the knowledge base a reference names (None: the packaged one, cached).

    A version found in the archive must load as that version, so a misplaced copy is caught.
    """
    if ref is None:
        return load_kb()
    path = resolve_kb(ref, archive)
    if path == DEFAULT_KB_DIR:
        return load_kb()
    kb = load_kb(path)
    if not Path(ref).is_dir() and kb.version != _normalise(ref):
        raise KbReferenceError(
            f"knowledge base {ref!r}: the archived copy in {path} is version {kb.version}, not "
            f"{_normalise(ref)}"
        )
    return kb


def _already(dest: Path, kb: CompiledKB) -> Archived:
    have = content_hash(dest)
    if have != kb.content_hash:
        raise VersionConflict(
            f"version {kb.version} is already archived in {dest} with different content "
            f"({have[:19]}, this knowledge base is {kb.content_hash[:19]}); one version must name "
            f"one content: bump `version` in guideline.yaml")
    return Archived(kb.version, dest, have, created=False)


def archive_kb(source: Path | str | None = None, archive: Path | str | None = None) -> Archived:
    """Copy a knowledge base (default: the packaged one) to ``<archive>/<its version>/``.

    Same version and content already there: nothing is written. Same version, other content:
    :class:`VersionConflict`. The copy goes to a hidden temporary directory in the archive,
    is loaded and its hash checked, and only then renamed into place, so a failure never
    leaves a half-written version behind.
    """
    src = Path(source) if source is not None else DEFAULT_KB_DIR
    kb = load_kb(source)
    version = kb.version
    if not _VERSION.fullmatch(version):
        raise KbArchiveError(f"version {version!r} cannot name an archive directory")
    root = archive_dir(archive)
    dest = root / version
    if dest.exists():
        return _already(dest, kb)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{version}.partial-{uuid.uuid4().hex[:12]}"
    try:
        try:
            shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        except shutil.Error as e:  # copytree copies what it can, then lists what failed
            failed = e.args[0] if e.args and isinstance(e.args[0], list) else [e]
            why = "; ".join(str(f[2]) if isinstance(f, tuple) else str(f) for f in failed)
            raise KbArchiveError(
                f"could not copy {src} into {root}, nothing archived: {why}"
            ) from e
        copy = load_kb(tmp)
        if (copy.version, copy.content_hash) != (version, kb.content_hash):
            raise KbArchiveError(
                f"the copy of {src} does not match it ({copy.content_hash[:19]}); nothing archived"
            )
        try:
            tmp.rename(dest)
        except OSError:
            if dest.exists():  # archived concurrently: same rule as if it had been there before
                return _already(dest, kb)
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return Archived(version, dest, kb.content_hash, created=True)

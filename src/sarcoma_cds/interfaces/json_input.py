"""Reading patient JSON the same strict way at every edge (CLI, REST, web import).

``json.loads`` keeps the last value of a repeated key: a record with two ``grade`` values would
be staged on whichever came last, silently. Here a repeated key is an error naming the key.
Files may start with a UTF-8 byte-order mark (Windows editors write one); bytes that are not
UTF-8 are reported with their offset instead of a traceback. Input that would crash a later
step is refused here with a message naming the problem (issue 12): nesting deeper than
:data:`MAX_DEPTH` (Python's parser would hit its recursion limit) and lone UTF-16 surrogates
such as ``"\\ud800"`` (valid JSON escapes, but not Unicode text: they cannot be written out as
UTF-8, stored in PostgreSQL, or shown on a page).
"""

from __future__ import annotations

import json
import re
from typing import Any

#: The deepest nesting accepted (a FHIR Bundle nests about 10 levels).
MAX_DEPTH = 64
_SURROGATE = re.compile("[\ud800-\udfff]")
#: A parsed document can hold a lone surrogate only when its text has a ``\\uD800``-``\\uDFFF``
#: escape (``\\ud`` / ``\\uD``) or is not ASCII and holds a surrogate itself; other texts need
#: no walk of their strings (one that may hold one gets the full walk, which names where).


def _maybe_surrogate(text: str) -> bool:
    return ("\\ud" in text or "\\uD" in text
            or (not text.isascii() and _SURROGATE.search(text) is not None))


class DuplicateKeyError(ValueError):
    """A JSON object gives the same key twice."""

    def __init__(self, key: str) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key = key
        self.message = (
            "duplicate key: given more than once in the same object; which value is meant is "
            "ambiguous"
        )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise DuplicateKeyError(k)
        out[k] = v
    return out


class TooDeepError(ValueError):
    """JSON nested deeper than :data:`MAX_DEPTH` levels."""

    def __init__(self) -> None:
        super().__init__(f"JSON nested deeper than {MAX_DEPTH} levels; no patient record or "
                         "FHIR Bundle nests that deep")


class LoneSurrogateError(ValueError):
    """A string (or key) holds a lone UTF-16 surrogate; ``path`` names where (``a.b[2]``)."""

    def __init__(self, path: str) -> None:
        self.path = path or "(the document)"
        self.message = ("contains a lone UTF-16 surrogate escape (such as \\ud800), which is "
                        "not Unicode text")
        super().__init__(f"{self.path}: {self.message}")


def loads(text: str | bytes) -> Any:
    """``json.loads`` that rejects repeated keys (:class:`DuplicateKeyError`), nesting deeper
    than :data:`MAX_DEPTH` (:class:`TooDeepError`) and lone surrogates
    (:class:`LoneSurrogateError`); bytes are decoded with :func:`decode`. Invalid JSON raises
    ``json.JSONDecodeError`` as usual."""
    if isinstance(text, bytes):
        text = decode(text)
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise TooDeepError() from None
    if _maybe_surrogate(text):
        check(value)
    else:
        _check_depth(value)  # (the same refusal as check's, without visiting the strings)
    return value


def _check_depth(value: Any) -> None:
    """:func:`check`'s depth rule alone, level by level over the containers only (issue 13:
    the full walk builds a path for every value of every request)."""
    level = [value] if isinstance(value, dict | list) else []
    depth = 0
    while level:
        if depth >= MAX_DEPTH:
            raise TooDeepError()
        nested: list[Any] = []
        for c in level:
            nested += [x for x in (c.values() if isinstance(c, dict) else c)
                       if isinstance(x, dict | list)]
        level = nested
        depth += 1


def check(value: Any) -> None:
    """Refuse a parsed document nested deeper than :data:`MAX_DEPTH` or holding a lone
    surrogate in any string or key (iterative: never recursion-limited itself)."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        v, path, depth = stack.pop()
        if isinstance(v, str):
            if _SURROGATE.search(v):
                raise LoneSurrogateError(path)
        elif isinstance(v, dict):
            if depth >= MAX_DEPTH:
                raise TooDeepError()
            for k, item in v.items():
                if _SURROGATE.search(k):
                    raise LoneSurrogateError(f"{path}.(a key)" if path else "(a key)")
                stack.append((item, f"{path}.{k}" if path else k, depth + 1))
        elif isinstance(v, list):
            if depth >= MAX_DEPTH:
                raise TooDeepError()
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(v))


class NotUtf8Error(ValueError):
    """Input bytes that are not UTF-8; ``offset`` is the first bad byte (0-based)."""

    def __init__(self, err: UnicodeDecodeError, bom: bool) -> None:
        self.offset = err.start + (3 if bom else 0)
        self.byte = err.object[err.start:err.start + 1]
        super().__init__(f"not UTF-8 text (byte 0x{self.byte.hex()} at byte offset {self.offset}); "
                         "save the file as UTF-8")


def decode(raw: bytes) -> str:
    """UTF-8 text of ``raw``, a leading byte-order mark dropped; :class:`NotUtf8Error` otherwise."""
    bom = raw.startswith(b"\xef\xbb\xbf")
    body = raw[3:] if bom else raw
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise NotUtf8Error(e, bom) from None
